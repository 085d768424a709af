using System.Diagnostics;
using Duroslight.Tests.Shared;
using Xunit;
using Xunit.Abstractions;

namespace Duroslight.Server.Tests;

/// <summary>
/// A bounded soak against the real process on the default GFTL store (bench/Duroslight.Soak, bench/README.md "Soak"):
/// host processes with connect/disconnect churn and verified I/O of mixed sizes, while the control API creates,
/// resizes, snapshots and deletes volumes and changes a subsystem's host list; afterwards the target's descriptors,
/// controllers and connections are back at their baseline and its memory near it. `bench/run-soak.sh` runs it longer.
/// </summary>
public sealed class SoakProcessTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Hosts_churn_and_control_changes_lose_nothing_and_leave_nothing_behind()
    {
        using var dir = new TempDir();
        using var server = await ServerProcess.StartAsync("--data-dir", dir.Path, "--cores", "0", "--volume-size", "512M");
        var psi = new ProcessStartInfo("dotnet", [Path.Combine(AppContext.BaseDirectory, "duroslight-soak.dll"), "run", "--port", $"{server.IoPort}",
            "--control", Path.Combine(dir.Path, "control.sock"), "--pid", $"{server.Pid}", "--seconds", "45", "--workers", "3", "--seed", "7"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var soak = Process.Start(psi)!;
        Task<string> stdout = soak.StandardOutput.ReadToEndAsync(), stderr = soak.StandardError.ReadToEndAsync();
        await soak.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(10));
        string report = await stdout + await stderr;
        output.WriteLine(report);
        Assert.True(soak.ExitCode == 0, $"soak exit {soak.ExitCode}:\n{report}\nserver:\n{server.Output}");
        Assert.Contains("back to the baseline", report);
        Assert.False(server.HasExited, server.Output);
    }
}
