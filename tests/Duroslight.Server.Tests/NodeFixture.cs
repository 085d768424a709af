using System.Net;
using System.Net.Sockets;
using Duroslight.Server.Cli;
using Duroslight.Server.Control;
using Duroslight.Server.Hosting;
using Microsoft.Extensions.Logging.Abstractions;

namespace Duroslight.Server.Tests;

/// <summary>A whole node in this process on free loopback ports, with in-memory volumes.</summary>
public sealed class NodeFixture : IAsyncDisposable
{
    public NodeFixture(Func<ServeSettings, ServeSettings>? configure = null)
    {
        var settings = new ServeSettings
        {
            Listen = new IPEndPoint(IPAddress.Loopback, FreePort()),
            Discovery = new IPEndPoint(IPAddress.Loopback, FreePort()),
            Metrics = new IPEndPoint(IPAddress.Loopback, FreePort()),
            InMemory = true,
            DefaultVolumeBytes = 64L << 20,
            DrainTimeout = TimeSpan.FromSeconds(5),
            ControlSocket = Path.Combine(TempDir, "control.sock"),
        };
        Settings = configure?.Invoke(settings) ?? settings;
        Node = new NodeHost(Settings, NullLoggerFactory.Instance);
        Node.Start();
    }

    /// <summary>A private directory for this node (control socket, Prometheus files); removed on dispose.</summary>
    public string TempDir { get; } = Directory.CreateTempSubdirectory("dsl-node-").FullName;

    public ServeSettings Settings { get; }
    public NodeHost Node { get; }
    public int IoPort => Settings.Listen.Port;
    public int DiscoveryPort => Settings.Discovery.Port;

    public async Task<string> ScrapeAsync()
    {
        using var http = new HttpClient();
        return await http.GetStringAsync($"http://{Settings.Metrics}/metrics");
    }

    /// <summary>A control API client on the node's socket.</summary>
    public ControlClient Control() => new(Settings.ControlSocketPath);

    public async ValueTask DisposeAsync()
    {
        await Node.DisposeAsync();
        try
        {
            Directory.Delete(TempDir, recursive: true);
        }
        catch (IOException)
        {
            // A straggling file (e.g. Prometheus still closing) must not fail the test.
        }
    }

    /// <summary>A port the kernel just handed out; bound and released, so a later bind almost surely gets it.</summary>
    public static int FreePort()
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)s.LocalEndPoint!).Port;
    }
}
