using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Duroslight.Host;
using Xunit;

namespace Duroslight.Server.Tests;

/// <summary>/metrics as Prometheus itself reads it: promtool's linter and a real Prometheus server on loopback.</summary>
public sealed class MetricsTests
{
    private const string Nqn = "nqn.2026-11.io.duroslight:default";
    private const string Host = "nqn.2014-08.org.nvmexpress:uuid:cccccccc-0000-0000-0000-00000000000c";
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    /// <summary>On every store: each adds its own families (the GFTL's are the default configuration's).</summary>
    [Theory]
    [InlineData("memory")]
    [InlineData("sparse")]
    [InlineData("gftl")]
    public async Task Io_is_counted_per_volume_and_shard_and_promtool_accepts_the_page(string store)
    {
        string data = Directory.CreateTempSubdirectory("dsl-metrics-" + store + "-").FullName;
        try
        {
            // One shard, so every count lands on shard="0" (with more, chunks run on their owning shards).
            await using var node = new NodeFixture(s => s with
            {
                Cores = [0],
                InMemory = store == "memory",
                StoreKind = store,
                DataDirectory = data,
                DefaultVolumeBytes = 16L << 20,
                Devices = store == "gftl" ? [new Storage.Gftl.GftlDeviceSpec(Path.Combine(data, "d0.img"), 64L << 20)] : [],
            });
            await CountsAndPromtoolAsync(node, store);
        }
        finally
        {
            Directory.Delete(data, recursive: true);
        }
    }

    private static async Task CountsAndPromtoolAsync(NodeFixture node, string store)
    {
        await using (var host = await NvmeTcpController.ConnectAsync("127.0.0.1", node.IoPort, Nqn, Host))
        {
            await host.WriteAsync(1, 0, 8, new byte[8 * 4096]);
            await host.ReadAsync(1, 0, 8, new byte[8 * 4096]);
            await host.ReadAsync(1, 8, 2, new byte[2 * 4096]);
            string text = await node.ScrapeAsync();
            Assert.Contains("duroslight_volume_commands_total{volume=\"default\",volume_id=\"" + node.Node.Volumes.Single().Id + "\",op=\"read\"} 2", text);
            Assert.Contains("duroslight_volume_bytes_total{volume=\"default\",volume_id=\"" + node.Node.Volumes.Single().Id + "\",op=\"write\"} 32768", text);
            Assert.Contains("duroslight_commands_total{shard=\"0\",op=\"read\"} 2", text);
            Assert.Contains("duroslight_read_latency_seconds_count{shard=\"0\"} 2", text);
            Assert.Contains("duroslight_read_latency_seconds_bucket{shard=\"0\",le=\"+Inf\"} 2", text);
            Assert.Contains("duroslight_inflight_commands{shard=\"0\"} 0", text);
            Assert.Contains("duroslight_controllers{shard=\"0\",kind=\"io\"} 1", text);
            Assert.Contains("duroslight_queues{shard=\"0\",kind=\"io\"} 2", text);
            // The loop counted its own work: the commands above took iterations and io_uring_enter calls.
            Assert.Matches("duroslight_shard_work_iterations_total\\{shard=\"0\"\\} [1-9]", text);
            Assert.Matches("duroslight_shard_enters_total\\{shard=\"0\"\\} [1-9]", text);
            Assert.Contains("lightbox_fe_ctrl_id_used{pool_id=\"0\",shard=\"0\",type=\"counter\"} 1", text);
            if (store == "gftl") Assert.Contains("duroslight_gftl_gc_segments_cleaned_total ", text);
            if (store == "gftl") Assert.Contains("duroslight_gftl_repacked_bytes_total 0", text);
            var (code, output) = await RunAsync("promtool", ["check", "metrics"], stdin: text);
            Assert.True(code == 0, $"promtool check metrics failed on the {store} store ({code}):\n{output}");
        }
    }

    [Fact]
    public async Task A_real_prometheus_scrapes_the_node_and_counts_its_controllers()
    {
        await using var node = new NodeFixture();
        await using var a = await NvmeTcpController.ConnectAsync("127.0.0.1", node.IoPort, Nqn, Host);
        await using var b = await NvmeTcpController.ConnectAsync("127.0.0.1", node.IoPort, Nqn + ".aux-3", Host);
        int port = NodeFixture.FreePort();
        string config = Path.Combine(node.TempDir, "prometheus.yml");
        await File.WriteAllTextAsync(config, $"""
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
            scrape_configs:
              - job_name: duroslight
                static_configs:
                  - targets: ['{node.Settings.Metrics}']
            """);
        var psi = new ProcessStartInfo("prometheus", [$"--config.file={config}", $"--storage.tsdb.path={Path.Combine(node.TempDir, "tsdb")}",
            $"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        using var prometheus = Process.Start(psi)!;
        prometheus.ErrorDataReceived += (_, _) => { };
        prometheus.BeginErrorReadLine();
        prometheus.BeginOutputReadLine();
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/") };
            Assert.Equal(1, await QueryUntilAsync(http, "up{job=\"duroslight\"}", 1));
            Assert.Equal(2, await QueryUntilAsync(http, "sum(lightbox_fe_ctrl_id_used)", 2));
            Assert.Equal(1, await QueryUntilAsync(http, "sum(lightbox_fe_ctrl_id_used{pool_id=\"3\"})", 1));
            Assert.Equal(1, await QueryUntilAsync(http, "duroslight_state{state=\"active\"}", 1));
        }
        finally
        {
            prometheus.Kill(entireProcessTree: true);
            await prometheus.WaitForExitAsync();
        }
    }

    /// <summary>Polls an instant query until its single value equals <paramref name="expected"/>; returns the last value.</summary>
    private static async Task<double> QueryUntilAsync(HttpClient http, string query, double expected)
    {
        var deadline = DateTime.UtcNow + Limit;
        double last = double.NaN;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                var body = JsonNode.Parse(await http.GetStringAsync("api/v1/query?query=" + Uri.EscapeDataString(query)));
                var result = body!["data"]!["result"]!.AsArray();
                if (result.Count == 1)
                {
                    last = double.Parse(result[0]!["value"]![1]!.GetValue<string>(), CultureInfo.InvariantCulture);
                    if (last == expected) return last;
                }
            }
            catch (HttpRequestException)
            {
                // Prometheus is still starting.
            }
            await Task.Delay(250);
        }
        return last;
    }

    private static async Task<(int Code, string Output)> RunAsync(string file, string[] args, string stdin)
    {
        var psi = new ProcessStartInfo(file, args) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        await p.StandardInput.WriteAsync(stdin);
        p.StandardInput.Close();
        string output = await p.StandardOutput.ReadToEndAsync() + await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync().WaitAsync(Limit);
        return (p.ExitCode, output);
    }
}
