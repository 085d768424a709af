using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using Xunit;

namespace Duroslight.Server.Tests;

/// <summary>The real `duroslight serve` process on free loopback ports, with its output captured.</summary>
internal sealed partial class ServerProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly TaskCompletionSource _active = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private ServerProcess(IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment, int openFilesLimit)
    {
        IoPort = NodeFixture.FreePort();
        string dll = Path.Combine(AppContext.BaseDirectory, "duroslight.dll");
        string[] command = ["dotnet", dll, "serve", "--metrics", "off", "--listen", $"127.0.0.1:{IoPort}",
            "--discovery", $"127.0.0.1:{NodeFixture.FreePort()}", .. args];
        // A descriptor limit is set by the shell that then becomes the server (exec), so the PID is the server's.
        var psi = openFilesLimit > 0
            ? new ProcessStartInfo("bash", ["-c", $"ulimit -n {openFilesLimit} && exec \"$@\"", "bash", .. command])
            : new ProcessStartInfo(command[0], command[1..]);
        psi.RedirectStandardOutput = true;
        psi.RedirectStandardError = true;
        foreach ((string name, string value) in environment ?? new Dictionary<string, string>())
        {
            psi.Environment[name] = value;
        }

        _process = Process.Start(psi)!;
        _process.OutputDataReceived += (_, e) => OnLine(e.Data);
        _process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public int IoPort { get; }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>Descriptors the server holds now (/proc/PID/fd).</summary>
    public int OpenDescriptors => Directory.GetFiles($"/proc/{_process.Id}/fd").Length;

    /// <summary>Resident memory (VmRSS) in bytes.</summary>
    public long ResidentBytes
    {
        get
        {
            foreach (var line in File.ReadLines($"/proc/{_process.Id}/status"))
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
            return 0;
        }
    }

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>Starts the server and waits until it is Active (or fails with its output if it exits first).</summary>
    public static Task<ServerProcess> StartAsync(params string[] args) => StartAsync(null, 0, args);

    /// <summary>As <see cref="StartAsync(string[])"/>, with extra environment variables for the process.</summary>
    public static Task<ServerProcess> StartAsync(IReadOnlyDictionary<string, string>? environment, params string[] args) =>
        StartAsync(environment, 0, args);

    /// <summary>As <see cref="StartAsync(string[])"/>, under <c>ulimit -n <paramref name="openFilesLimit"/></c> when above 0.</summary>
    public static Task<ServerProcess> StartAsync(int openFilesLimit, params string[] args) => StartAsync(null, openFilesLimit, args);

    private static async Task<ServerProcess> StartAsync(IReadOnlyDictionary<string, string>? environment, int openFilesLimit, string[] args)
    {
        string earlier = "";
        for (int attempt = 1; ; attempt++)
        {
            var server = new ServerProcess(args, environment, openFilesLimit);
            lock (server._output)
            {
                server._output.Insert(0, earlier);
            }

            Task exited = server._process.WaitForExitAsync();
            Task first = await Task.WhenAny(server._active.Task, exited, Task.Delay(TimeSpan.FromSeconds(60)));
            if (first == server._active.Task)
            {
                return server;
            }

            server.Dispose();

            // The free ports are picked by binding and releasing them: another process may take one in between.
            // The output keeps the failed attempt's lines (how that start recovered the store, for instance).
            if (attempt < 3 && server.Output.Contains("already in use", StringComparison.OrdinalIgnoreCase))
            {
                earlier = server.Output;
                continue;
            }

            throw new InvalidOperationException($"server did not become active:\n{server.Output}");
        }
    }

    /// <summary>Runs the server to its exit (for start-up refusals) and returns the exit code and output.</summary>
    public static async Task<(int ExitCode, string Output)> RunToExitAsync(params string[] args)
    {
        using var server = new ServerProcess(args, null, 0);
        await server._process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        server._process.WaitForExit();
        return (server._process.ExitCode, server.Output);
    }

    /// <summary>Sends <paramref name="signal"/> (9 = SIGKILL, 15 = SIGTERM) and waits for the exit code.</summary>
    public async Task<int> StopAsync(int signal)
    {
        Assert.Equal(0, Kill(_process.Id, signal));
        await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        return _process.ExitCode;
    }

    /// <summary>Sends <paramref name="signal"/> without waiting (19 = SIGSTOP, 18 = SIGCONT).</summary>
    public void Signal(int signal) => Assert.Equal(0, Kill(_process.Id, signal));

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit();
        }

        _process.Dispose();
    }

    private void OnLine(string? line)
    {
        lock (_output)
        {
            _output.AppendLine(line);
        }

        if (line?.Contains("state Active") == true)
        {
            _active.TrySetResult();
        }
    }

    [LibraryImport("libc", EntryPoint = "kill")]
    private static partial int Kill(int pid, int signal);
}
