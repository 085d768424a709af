using System.Threading.Channels;
using Duroslight.Host;
using Duroslight.Protocol.Nvme;
using Xunit;

namespace Duroslight.Server.Tests;

/// <summary>
/// The product's strict discovery client, as far as the tests need it: a persistent discovery controller with
/// discovery log change notices enabled (Set Features 0Bh bit 31, done by the host library when an AEN handler is
/// set), one AER always outstanding, keep-alive traffic, and a fresh Get Log Page 70h on every AEN. The host
/// library fails the connection on any unexpected PDU, so a protocol slip surfaces as a failed read here.
/// </summary>
public sealed class StrictDiscoveryHost : IAsyncDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);
    private readonly Channel<uint> _events = Channel.CreateUnbounded<uint>();
    private NvmeTcpController _controller = null!;

    public DiscoveryLog Log { get; private set; } = null!;

    public static async Task<StrictDiscoveryHost> ConnectAsync(int port, string hostNqn)
    {
        var host = new StrictDiscoveryHost();
        host._controller = await NvmeTcpController.ConnectAsync("127.0.0.1", port, NvmeTcpController.DiscoveryNqn, hostNqn,
            new NvmeTcpControllerOptions { IoQueues = 0, KeepAliveTimeoutMs = 10000, AsyncEventHandler = dw0 => host._events.Writer.TryWrite(dw0) })
            .WaitAsync(Limit);
        host.Log = await host._controller.ReadDiscoveryLogAsync();
        return host;
    }

    /// <summary>Waits for the discovery-log-change AEN, then reads the log afresh; its genctr must have moved.</summary>
    public async Task<DiscoveryLog> NextChangeAsync()
    {
        uint dw0 = await _events.Reader.ReadAsync().AsTask().WaitAsync(Limit);
        Assert.Equal(0x0070_F002u, dw0);
        await _controller.KeepAliveAsync();
        var log = await _controller.ReadDiscoveryLogAsync();
        Assert.True(log.GenerationCounter > Log.GenerationCounter, $"genctr {log.GenerationCounter} did not move from {Log.GenerationCounter}");
        Log = log;
        return log;
    }

    public async ValueTask DisposeAsync() => await _controller.DisposeAsync();
}
