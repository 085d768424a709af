using System.Diagnostics;
using System.Text;
using Duroslight.Tests.Shared;
using Xunit;

namespace Duroslight.Server.Tests;

/// <summary>A fact that needs etcd: skipped, saying why, only where /usr/bin/etcd is absent (CI installs etcd-server).</summary>
public sealed class EtcdFactAttribute : FactAttribute
{
    public EtcdFactAttribute()
    {
        if (!EtcdProcess.Installed) Skip = $"etcd is not installed at {EtcdProcess.Binary} (apt-get install etcd-server; .ci/run installs it)";
    }
}

/// <summary>A real single-member etcd on loopback (free ports in 20000-32000, a temporary data directory).</summary>
internal sealed class EtcdProcess : IDisposable
{
    public const string Binary = "/usr/bin/etcd";
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("dsl-etcd-");

    private EtcdProcess()
    {
        ClientPort = NodeFixture.FreePort();
        int peerPort = NodeFixture.FreePort();
        string peer = $"http://127.0.0.1:{peerPort}";
        var psi = new ProcessStartInfo(Binary, ["--name", "test", "--data-dir", _dir.FullName,
            "--listen-client-urls", Url, "--advertise-client-urls", Url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", $"test={peer}"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        _process = Process.Start(psi)!;
        _process.OutputDataReceived += (_, e) => { lock (_output) _output.AppendLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { lock (_output) _output.AppendLine(e.Data); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public static bool Installed => File.Exists(Binary);

    public int ClientPort { get; }
    public string Url => $"http://127.0.0.1:{ClientPort}";

    public string Output
    {
        get { lock (_output) return _output.ToString(); }
    }

    /// <summary>Starts etcd and waits until it answers /health (another start on fresh ports if a port was taken).</summary>
    public static async Task<EtcdProcess> StartAsync()
    {
        for (int attempt = 1; ; attempt++)
        {
            var etcd = new EtcdProcess();
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
            try
            {
                await Eventually.Until(async () =>
                {
                    if (etcd._process.HasExited) return true;
                    try
                    {
                        return (await http.GetStringAsync($"{etcd.Url}/health")).Contains("\"true\"", StringComparison.Ordinal);
                    }
                    catch (HttpRequestException)
                    {
                        return false;
                    }
                    catch (TaskCanceledException)
                    {
                        return false;
                    }
                }, "etcd answers /health", TimeSpan.FromSeconds(60));
                if (!etcd._process.HasExited) return etcd;
            }
            catch (Xunit.Sdk.XunitException) when (attempt < 3)
            {
            }
            string output = etcd.Output;
            etcd.Dispose();
            if (attempt >= 3 || !output.Contains("address already in use", StringComparison.OrdinalIgnoreCase))
                throw new InvalidOperationException($"etcd did not start:\n{output}");
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit();
        }
        _process.Dispose();
        try
        {
            _dir.Delete(recursive: true);
        }
        catch (IOException)
        {
            // etcd's files may still be closing; the temp directory is cleaned up later.
        }
    }
}
