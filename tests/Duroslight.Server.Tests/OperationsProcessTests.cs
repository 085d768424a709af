using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Xunit;

namespace Duroslight.Server.Tests;

/// <summary>The real process as the node manager and systemd drive it: sd_notify, status, ctl, exit codes.</summary>
public sealed class OperationsProcessTests
{
    private static readonly string Dll = DuroslightCli.Dll;
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Systemd_gets_ready_then_ctl_and_status_drive_the_node_and_shutdown_stops_it()
    {
        var dir = Directory.CreateTempSubdirectory("dsl-proc-");
        try
        {
            string notifyPath = Path.Combine(dir.FullName, "notify.sock");
            using var notify = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            notify.Bind(new UnixDomainSocketEndPoint(notifyPath));
            string sock = Path.Combine(dir.FullName, "ctl.sock");
            var psi = new ProcessStartInfo("dotnet", [Dll, "serve", "--memory", "--metrics", "off", "--volume-size", "16M",
                "--listen", $"127.0.0.1:{NodeFixture.FreePort()}", "--discovery", $"127.0.0.1:{NodeFixture.FreePort()}", "--control-socket", sock])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            psi.Environment["NOTIFY_SOCKET"] = notifyPath;
            using var process = Process.Start(psi)!;
            var output = new StringBuilder();
            process.OutputDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();

            // Each lifecycle state as STATUS=, READY=1 with Active (systemd's Type=notify waits for it).
            Assert.Equal(["STATUS=Gftl", "STATUS=Duroslight", "STATUS=Activating", "READY=1\nSTATUS=Active"],
                await NotificationsUntilAsync(notify, "READY=1"));

            var (code, stdout, _) = await Cli("status", "--socket", sock);
            Assert.Equal(0, code);
            Assert.StartsWith("state=Active ", stdout);
            Assert.Equal(1, stdout.Count(c => c == '\n'));
            (code, stdout, _) = await Cli("status", "--json", "--socket", sock);
            Assert.Equal(0, code);
            Assert.Contains("\"state\": \"Active\"", stdout);

            (code, stdout, _) = await Cli("ctl", "--socket", sock, "volumes", "create", "logs", "8M");
            Assert.Equal(0, code);
            Assert.Contains("name=logs", stdout);
            Assert.Contains("nsid=2", stdout);
            (code, _, string stderr) = await Cli("ctl", "--socket", sock, "volumes", "resize", "logs", "4M");
            Assert.Equal(1, code);
            Assert.Contains("error 409", stderr);
            (code, _, stderr) = await Cli("ctl", "--socket", sock, "volumes", "frobnicate");
            Assert.Equal(2, code);
            Assert.Contains("unknown command", stderr);
            (code, _, stderr) = await Cli("status", "--socket", Path.Combine(dir.FullName, "nobody.sock"));
            Assert.Equal(3, code);
            Assert.Contains("cannot reach", stderr);

            (code, _, _) = await Cli("ctl", "--socket", sock, "shutdown");
            Assert.Equal(0, code);
            Assert.Equal(["STOPPING=1\nSTATUS=Draining", "STATUS=Stopped"], await NotificationsUntilAsync(notify, "STATUS=Stopped"));
            await process.WaitForExitAsync().WaitAsync(Limit);
            Assert.Equal(0, process.ExitCode);
            Assert.False(File.Exists(sock));
            lock (output) Assert.Contains("state Stopped", output.ToString());
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task A_second_node_on_the_same_control_socket_refuses_to_start()
    {
        await using var first = new NodeFixture();
        var psi = new ProcessStartInfo("dotnet", [Dll, "serve", "--memory", "--metrics", "off", "--volume-size", "16M",
            "--listen", $"127.0.0.1:{NodeFixture.FreePort()}", "--discovery", $"127.0.0.1:{NodeFixture.FreePort()}",
            "--control-socket", first.Settings.ControlSocketPath])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(psi)!;
        string output = await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(Limit);
        Assert.Equal(1, process.ExitCode);
        Assert.Contains("in use by another process", output);
    }

    /// <summary>sd_notify datagrams as the process sent them, up to and including the first that contains <paramref name="last"/>.</summary>
    private static async Task<List<string>> NotificationsUntilAsync(Socket notify, string last)
    {
        var messages = new List<string>();
        var buffer = new byte[256];
        while (messages.Count == 0 || !messages[^1].Contains(last, StringComparison.Ordinal))
        {
            int n = await notify.ReceiveAsync(buffer, SocketFlags.None).WaitAsync(Limit);
            messages.Add(Encoding.UTF8.GetString(buffer, 0, n));
        }
        return messages;
    }

    private static Task<(int Code, string Stdout, string Stderr)> Cli(params string[] args) => DuroslightCli.RunAsync(Limit, args);
}
