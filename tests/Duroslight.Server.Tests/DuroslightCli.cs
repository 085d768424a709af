using System.Diagnostics;

namespace Duroslight.Server.Tests;

/// <summary>Runs the real `duroslight` command (status, ctl, ...) to its exit and captures what it printed.</summary>
internal static class DuroslightCli
{
    public static readonly string Dll = Path.Combine(AppContext.BaseDirectory, "duroslight.dll");

    public static async Task<(int Code, string Stdout, string Stderr)> RunAsync(TimeSpan limit, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet", [Dll, .. args]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync().WaitAsync(limit);
        return (p.ExitCode, await stdout, await stderr);
    }
}
