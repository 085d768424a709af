using System.Diagnostics;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using Duroslight.Host;

namespace Duroslight.Soak;

/// <summary>
/// The coordinator. A short warm-up session fills the target's pools, then the baseline is taken (descriptors,
/// controllers, connections, resident memory); WORKERS host processes run for SECONDS while this process changes
/// the target through its control API (volumes created, resized, snapshotted, deleted; aux-4's host list set to one
/// host, proven with a connect that must work and one that must be refused, then opened again). At the end every
/// worker must have verified everything and the target must come back to its baseline.
/// </summary>
internal sealed class SoakRun(SoakOptions o)
{
    private const string ProbeHost = "nqn.2014-08.org.nvmexpress:uuid:50a50a50-0000-4000-8000-0000000000ff";
    private const string OtherHost = "nqn.2014-08.org.nvmexpress:uuid:50a50a50-0000-4000-8000-0000000000fe";
    private readonly HttpClient _control = ControlClient(o.ControlSocket);
    private int _volumeActions, _hostActions;

    public async Task<int> RunAsync()
    {
        // Warm-up: one worker in the stripe after the others' (each worker expects its stripe to start as zeros).
        if (await RunWorkersAsync(o.Workers, 1, Math.Min(5, o.Seconds), o.Seed + 1000) != 0) return 1;
        await VolumeRoundAsync("soak-warm-up");
        await HostListRoundAsync();
        Sample baseline = await SampleAsync();
        Console.WriteLine($"baseline: {baseline}");
        var clock = Stopwatch.StartNew();
        using var stop = new CancellationTokenSource();
        Task churn = ChurnAsync(stop.Token);
        int failed = await RunWorkersAsync(0, o.Workers, o.Seconds, o.Seed);
        await stop.CancelAsync();
        await churn;
        Console.WriteLine($"soak: {o.Workers} workers for {clock.Elapsed.TotalSeconds:F0} s, {_volumeActions} volume actions, {_hostActions} host-list changes, {failed} worker(s) failed");
        return failed == 0 && await BackToBaselineAsync(baseline) ? 0 : 1;
    }

    /// <summary>Workers <paramref name="first"/> .. first + count - 1 of WORKERS + 1 stripes (the last one is the warm-up's).</summary>
    private async Task<int> RunWorkersAsync(int first, int count, int seconds, int seedBase)
    {
        var workers = new List<Process>();
        for (int id = first; id < first + count; id++)
        {
            var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = false, RedirectStandardError = false };
            if (Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet") start.ArgumentList.Add(typeof(SoakRun).Assembly.Location);
            foreach (string a in new[] { "worker", "--port", $"{o.Port}", "--nqn", o.Nqn, "--nsid", $"{o.Nsid}", "--id", $"{id}",
                         "--workers", $"{o.Workers + 1}", "--seconds", $"{seconds}", "--seed", $"{seedBase + id}" })
            {
                start.ArgumentList.Add(a);
            }

            workers.Add(Process.Start(start)!);
        }

        int failed = 0;
        foreach (Process worker in workers)
        {
            using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(seconds + 300));
            try
            {
                await worker.WaitForExitAsync(limit.Token);
            }
            catch (OperationCanceledException)
            {
                worker.Kill(entireProcessTree: true);
                Console.Error.WriteLine($"a worker did not finish within {seconds + 300} s (killed)");
            }

            failed += worker.HasExited && worker.ExitCode == 0 ? 0 : 1;
            worker.Dispose();
        }

        return failed;
    }

    /// <summary>Control-plane changes while the workers run, each checked; a failure ends the soak.</summary>
    private async Task ChurnAsync(CancellationToken stop)
    {
        for (int round = 0; !stop.IsCancellationRequested; round++)
        {
            await VolumeRoundAsync($"soak-{round}");
            await HostListRoundAsync();
            try
            {
                await Task.Delay(200, stop);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    private async Task VolumeRoundAsync(string name)
    {
        await Expect(HttpMethod.Post, "/v1/volumes", new JsonObject { ["name"] = name, ["size"] = "64M" }, 200);
        await Expect(HttpMethod.Post, $"/v1/volumes/{name}/resize", new JsonObject { ["size"] = "128M" }, 200);
        // Snapshots exist on the GFTL store only; elsewhere the API refuses them with a 4xx, never a 5xx.
        int snapshot = await SendAsync(HttpMethod.Post, $"/v1/volumes/{name}/snapshot", new JsonObject { ["name"] = name + "-snap" });
        if (snapshot >= 500) throw new InvalidOperationException($"snapshot of {name}: HTTP {snapshot}");
        if (snapshot == 200) await Expect(HttpMethod.Delete, $"/v1/volumes/{name}-snap", null, 200);
        await Expect(HttpMethod.Delete, $"/v1/volumes/{name}", null, 200);
        _volumeActions += snapshot == 200 ? 5 : 3;
    }

    private async Task HostListRoundAsync()
    {
        await Expect(HttpMethod.Post, "/v1/subsystems/aux-4/hosts/set", new JsonObject { ["hosts"] = new JsonArray(ProbeHost) }, 200);
        await using (var allowed = await NvmeTcpController.ConnectAsync("127.0.0.1", o.Port, o.Nqn + ".aux-4", ProbeHost, new NvmeTcpControllerOptions { IoQueues = 0 }))
        {
            await allowed.DisconnectAsync();
        }

        bool refused = false;
        try
        {
            await using var other = await NvmeTcpController.ConnectAsync("127.0.0.1", o.Port, o.Nqn + ".aux-4", OtherHost, new NvmeTcpControllerOptions { IoQueues = 0 });
        }
        catch (Exception e) when (e is NvmeException or IOException or SocketException)
        {
            refused = true;
        }

        if (!refused) throw new InvalidOperationException("a host not on aux-4's list connected to it");
        await Expect(HttpMethod.Post, "/v1/subsystems/aux-4/hosts/any", null, 200);
        _hostActions += 2;
    }

    /// <summary>Descriptors (less loaded assemblies), controllers and connections exactly as before; resident memory within 25 % + 32 MiB (the GC keeps what it likes).</summary>
    private async Task<bool> BackToBaselineAsync(Sample baseline)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        Sample now;
        do
        {
            now = await SampleAsync();
            if (now.Descriptors <= baseline.Descriptors && now.Controllers == baseline.Controllers && now.Connections == baseline.Connections &&
                now.ResidentBytes <= (baseline.ResidentBytes * 5 / 4) + (32 << 20))
            {
                Console.WriteLine($"after:    {now} (back to the baseline)");
                return true;
            }

            await Task.Delay(500);
        }
        while (DateTime.UtcNow < deadline);
        Console.Error.WriteLine($"after:    {now}: not back to the baseline {baseline} within 60 s");
        return false;
    }

    private readonly record struct Sample(int Descriptors, int Controllers, int Connections, long ResidentBytes)
    {
        public override string ToString() => $"{Descriptors} descriptors, {Controllers} controllers, {Connections} connections, {ResidentBytes >> 20} MiB resident";
    }

    private async Task<Sample> SampleAsync()
    {
        JsonNode state = JsonNode.Parse(await _control.GetStringAsync("/v1/state"))!;
        long rss = 0;
        foreach (string line in File.ReadLines($"/proc/{o.Pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal)) rss = long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        }

        return new Sample(Descriptors(), (int)state["controllers"]!, (int)state["connections"]!, rss);
    }

    /// <summary>
    /// The target's descriptors, less the assemblies and native libraries the runtime keeps open once loaded: a code
    /// path first taken during the soak loads one (the runtime never unloads it), which is not a leak.
    /// </summary>
    private int Descriptors()
    {
        int count = 0;
        foreach (string fd in Directory.GetFiles($"/proc/{o.Pid}/fd"))
        {
            string? target = new FileInfo(fd).LinkTarget;
            if (target is null || !(target.EndsWith(".dll", StringComparison.Ordinal) || target.EndsWith(".so", StringComparison.Ordinal))) count++;
        }

        return count;
    }

    private async Task Expect(HttpMethod method, string path, JsonObject? body, int status)
    {
        int got = await SendAsync(method, path, body);
        if (got != status) throw new InvalidOperationException($"{method} {path}: HTTP {got}, expected {status}");
    }

    private async Task<int> SendAsync(HttpMethod method, string path, JsonObject? body)
    {
        using var request = new HttpRequestMessage(method, path) { Content = body is null ? null : JsonContent.Create(body) };
        using HttpResponseMessage response = await _control.SendAsync(request);
        return (int)response.StatusCode;
    }

    private static HttpClient ControlClient(string socket) => new(new SocketsHttpHandler
    {
        ConnectCallback = async (_, token) =>
        {
            var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await s.ConnectAsync(new UnixDomainSocketEndPoint(socket), token);
            return new NetworkStream(s, ownsSocket: true);
        },
    })
    { BaseAddress = new Uri("http://localhost") };
}
