using System.Net.Sockets;
using Duroslight.Host;
using Xunit;

namespace Duroslight.Server.Tests;

/// <summary>A host that floods commands cannot make the target grow without bound.</summary>
public sealed class BackPressureTests
{
    [Fact]
    public async Task A_host_that_never_reads_responses_is_pushed_back_by_tcp()
    {
        await using var node = new NodeFixture();
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true, SendTimeout = 3000, ReceiveTimeout = 10_000 };
        socket.Connect("127.0.0.1", node.IoPort);
        var capsule = ConnectAdminAndCaptureKeepAlive(socket);

        // 256 MiB of Keep Alive capsules: each one gets a response that this host never reads. Without back-pressure
        // the target would read them all and queue ~90 MiB of responses; with it, our sends stall well before.
        var batch = new byte[capsule.Length * 1024];
        for (int i = 0; i < 1024; i++) capsule.CopyTo(batch, i * capsule.Length);
        long sent = 0;
        var error = Assert.Throws<SocketException>(() =>
        {
            while (sent < 256L << 20) sent += socket.Send(batch);
        });
        Assert.Equal(SocketError.TimedOut, error.SocketErrorCode);
        Assert.True(sent < 128L << 20, $"sent {sent >> 20} MiB before being pushed back");
        Assert.Equal(1, node.Node.ConnectionCount);
    }

    /// <summary>ICReq, admin Connect, then the bytes of one Keep Alive capsule (sent once, to be repeated).</summary>
    private static byte[] ConnectAdminAndCaptureKeepAlive(Socket socket)
    {
        var queue = new HostQueue(new HostQueueOptions { QueueId = 0, QueueDepth = 32 });
        var buffer = new byte[64 * 1024];
        void Exchange()
        {
            while (!queue.PendingOutput.IsEmpty) queue.ConsumeOutput(socket.Send(queue.PendingOutput.Span));
            int n = socket.Receive(buffer);
            Assert.NotEqual(0, n);
            queue.Receive(buffer.AsSpan(0, n));
        }
        queue.Start();
        while (queue.State == HostQueueState.AwaitingICResp) Exchange();
        var data = ConnectData.Create(Guid.NewGuid(), ConnectData.DynamicCntlid, "nqn.2026-11.io.duroslight:default",
            $"nqn.2014-08.org.nvmexpress:uuid:{Guid.NewGuid()}");
        Assert.True(queue.TrySubmit(NvmeCommands.Connect(0, 31, 0, 0), data, null, out var connect));
        while (connect.State != HostCommandState.Completed) Exchange();
        Assert.True(connect.Status.IsSuccess);
        Assert.True(queue.TrySubmit(NvmeCommands.KeepAlive(), default, null, out _));
        return queue.PendingOutput.ToArray();
    }
}
