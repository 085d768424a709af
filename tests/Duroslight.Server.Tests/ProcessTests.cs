using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using Duroslight.Protocol.Wire;
using Xunit;

namespace Duroslight.Server.Tests;

/// <summary>The process as operators and hosts meet it: metrics, malformed input, signals.</summary>
public sealed class ProcessTests
{
    [Fact]
    public async Task Metrics_show_every_pool_and_the_active_state()
    {
        await using var node = new NodeFixture();
        string text = await node.ScrapeAsync();
        Assert.Contains("# TYPE lightbox_fe_ctrl_id_used gauge", text);
        for (int pool = 0; pool <= 4; pool++)
            Assert.Contains($"lightbox_fe_ctrl_id_used{{pool_id=\"{pool}\",shard=\"0\",type=\"counter\"}} 0", text);
        Assert.Contains("duroslight_state{state=\"active\"} 1", text);
    }

    [Fact]
    public async Task Malformed_pdu_gets_a_termreq_and_spares_other_connections()
    {
        await using var node = new NodeFixture();
        using var good = await ConnectAsync(node.IoPort);
        using var bad = await ConnectAsync(node.IoPort);
        await bad.SendAsync(new byte[] { 0x55, 0, 8, 0, 8, 0, 0, 0 });
        var term = await ReadAsync(bad, 24 + 8);
        Assert.Equal((byte)PduType.C2HTermReq, term[0]);
        Assert.Equal((ushort)TermReqFes.InvalidPduHeaderField, BinaryPrimitives.ReadUInt16LittleEndian(term.AsSpan(8)));
        Assert.Equal(0, await bad.ReceiveAsync(new byte[16]));

        var icreq = new byte[PduLayout.ICReqSize];
        PduWriter.ICReq(icreq, 0, true, true, 0);
        await good.SendAsync(icreq);
        var icresp = await ReadAsync(good, PduLayout.ICRespSize);
        Assert.Equal((byte)PduType.ICResp, icresp[0]);
        Assert.Equal(3, icresp[PduLayout.OffDigest]);
    }

    [Fact]
    public async Task Sigterm_stops_the_process_cleanly()
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "duroslight.dll");
        int port = NodeFixture.FreePort();
        var psi = new ProcessStartInfo("dotnet", [dll, "serve", "--memory", "--metrics", "off", "--volume-size", "16M",
            "--listen", $"127.0.0.1:{port}", "--discovery", $"127.0.0.1:{NodeFixture.FreePort()}",
            "--control-socket", Path.Combine(Path.GetTempPath(), $"dsl-sigterm-{Guid.NewGuid():N}.sock")])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(psi)!;
        string output = "";
        var active = new TaskCompletionSource();
        process.OutputDataReceived += (_, e) =>
        {
            output += e.Data + "\n";
            if (e.Data?.Contains("state Active") == true) active.TrySetResult();
        };
        process.BeginOutputReadLine();
        await active.Task.WaitAsync(TimeSpan.FromSeconds(30));
        using (await ConnectAsync(port)) { }
        Assert.Equal(0, Kill(process.Id, 15));
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(0, process.ExitCode);
        Assert.Contains("state Draining", output);
        Assert.Contains("state Stopped", output);
    }

    [Fact]
    public async Task Bad_flags_exit_with_code_2_and_a_clear_message()
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "duroslight.dll");
        var psi = new ProcessStartInfo("dotnet", [dll, "serve", "--aux-count", "7"]) { RedirectStandardError = true, RedirectStandardOutput = true };
        using var process = Process.Start(psi)!;
        string err = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(2, process.ExitCode);
        Assert.Contains("--aux-count", err);
    }

    [Fact]
    public async Task A_shard_that_cannot_start_stops_the_process_with_code_1_and_the_reason()
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "duroslight.dll");
        var psi = new ProcessStartInfo("dotnet", [dll, "serve", "--memory", "--cores", "1000", "--metrics", "off",
            "--listen", $"127.0.0.1:{NodeFixture.FreePort()}", "--discovery", $"127.0.0.1:{NodeFixture.FreePort()}"])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        string err = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(1, process.ExitCode);
        Assert.Contains("cannot pin shard 0 to CPU 1000", await stdout + err);
    }

    /// <summary>
    /// A second process must not share a port with a running one (SO_REUSEPORT would let the kernel split
    /// connections between them): each listener, I/O, discovery and metrics, refuses the start with exit code 1 and a
    /// message naming the port. Checked on the process's output only, so it keeps guarding whatever serves metrics.
    /// </summary>
    [Theory]
    [InlineData("listen")]
    [InlineData("discovery")]
    [InlineData("metrics")]
    public async Task A_port_in_use_refuses_the_start_with_code_1(string taken)
    {
        string dataA = Directory.CreateTempSubdirectory("dsl-port-a-").FullName, dataB = Directory.CreateTempSubdirectory("dsl-port-b-").FullName;
        try
        {
            int io = NodeFixture.FreePort(), discovery = NodeFixture.FreePort(), metrics = NodeFixture.FreePort();
            using var first = await ServerProcess.StartAsync("--store", "memory", "--volume-size", "16M", "--data-dir", dataA,
                "--listen", $"127.0.0.1:{io}", "--discovery", $"127.0.0.1:{discovery}", "--metrics", $"127.0.0.1:{metrics}");
            int port = taken switch { "listen" => io, "discovery" => discovery, _ => metrics };
            string Endpoint(string which, int own) => which == taken ? $"127.0.0.1:{port}" : $"127.0.0.1:{own}";
            var (code, output) = await ServerProcess.RunToExitAsync("--store", "memory", "--volume-size", "16M", "--data-dir", dataB,
                "--listen", Endpoint("listen", NodeFixture.FreePort()), "--discovery", Endpoint("discovery", NodeFixture.FreePort()),
                "--metrics", Endpoint("metrics", NodeFixture.FreePort()));
            Assert.True(code == 1, $"exit code {code}, expected 1:\n{output}");
            Assert.Contains(port.ToString(System.Globalization.CultureInfo.InvariantCulture), output);
            Assert.Contains("in use", output, StringComparison.OrdinalIgnoreCase);
            Assert.DoesNotContain("state Active", output);

            // The first process is untouched and still serves the port.
            using (await ConnectAsync(port)) { }
            Assert.DoesNotContain("Stopped", first.Output);
        }
        finally
        {
            Directory.Delete(dataA, recursive: true);
            Directory.Delete(dataB, recursive: true);
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
    private static extern int Kill(int pid, int signal);

    private static async Task<Socket> ConnectAsync(int port)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await s.ConnectAsync("127.0.0.1", port);
        return s;
    }

    private static async Task<byte[]> ReadAsync(Socket s, int count)
    {
        var buffer = new byte[count];
        int filled = 0;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (filled < count)
        {
            int n = await s.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None, timeout.Token);
            if (n == 0) throw new IOException($"connection closed after {filled} of {count} bytes");
            filled += n;
        }
        return buffer;
    }
}
