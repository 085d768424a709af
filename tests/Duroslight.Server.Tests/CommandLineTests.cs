using Duroslight.Server.Cli;
using Xunit;

namespace Duroslight.Server.Tests;

public sealed class CommandLineTests
{
    [Fact]
    public void Defaults_are_the_documented_ones()
    {
        var s = CommandLine.ParseServe([]);
        Assert.Equal("127.0.0.1:4420", s.Listen.ToString());
        Assert.Equal("127.0.0.1:8009", s.Discovery.ToString());
        Assert.Equal("127.0.0.1:9180", s.Metrics!.ToString());
        Assert.Equal("./duroslight-data", s.DataDirectory);
        Assert.Equal("nqn.2026-11.io.duroslight:default", s.SubsystemNqn);
        Assert.Equal(4, s.AuxSubsystemCount);
        Assert.Equal(1L << 30, s.DefaultVolumeBytes);
        Assert.Empty(s.AllowedHosts);
    }

    [Fact]
    public void Flags_set_every_value()
    {
        var s = CommandLine.ParseServe(["--listen", "127.0.0.2:5000", "--discovery", "127.0.0.2:5001", "--metrics", "off",
            "--data-dir", "/tmp/x", "--nqn", "nqn.2026-01.test:a", "--aux-count", "2", "--node-index", "31",
            "--allow-host", "nqn.h:1", "--allow-host", "nqn.h:2", "--volume-size", "64M", "--advertise", "10.1.2.3"]);
        Assert.Equal(5000, s.Listen.Port);
        Assert.Equal(5001, s.Discovery.Port);
        Assert.Null(s.Metrics);
        Assert.Equal("/tmp/x", s.DataDirectory);
        Assert.Equal(2, s.AuxSubsystemCount);
        Assert.Equal(31, s.NodeIndex);
        Assert.Equal(["nqn.h:1", "nqn.h:2"], s.AllowedHosts);
        Assert.Equal(64L << 20, s.DefaultVolumeBytes);
        Assert.Equal("10.1.2.3", s.AdvertisedAddress);
    }

    [Theory]
    [InlineData("--listen", "nowhere", "not ADDR:PORT")]
    [InlineData("--aux-count", "5", "0..4")]
    [InlineData("--node-index", "32", "0..31")]
    [InlineData("--volume-size", "1000", "multiple of 4096")]
    [InlineData("--volume-size", "lots", "not a size")]
    [InlineData("--log-level", "loud", "not one of")]
    [InlineData("--host-data-budget", "512K", "below 1M")]
    [InlineData("--host-data-timeout", "-1", "0..3600000")]
    [InlineData("--in-capsule-data", "2M", "above 1M")]
    public void Bad_values_name_the_flag(string flag, string value, string message)
    {
        var e = Assert.Throws<UsageException>(() => CommandLine.ParseServe([flag, value]));
        Assert.Contains(flag, e.Message);
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void Unknown_flag_and_missing_value_are_refused()
    {
        Assert.Contains("unknown option", Assert.Throws<UsageException>(() => CommandLine.ParseServe(["--bogus"])).Message);
        Assert.Contains("needs a value", Assert.Throws<UsageException>(() => CommandLine.ParseServe(["--listen"])).Message);
    }

    [Fact]
    public void Config_file_is_read_and_flags_override_it()
    {
        string path = Path.GetTempFileName();
        File.WriteAllText(path, """
            listen: 127.0.0.1:6000
            data_dir: /srv/dsl
            aux_count: 1
            allowed_hosts:
              - nqn.host:a
            """);
        var s = CommandLine.ParseServe(["--config", path, "--listen", "127.0.0.1:7000"]);
        Assert.Equal(7000, s.Listen.Port);
        Assert.Equal("/srv/dsl", s.DataDirectory);
        Assert.Equal(1, s.AuxSubsystemCount);
        Assert.Equal(["nqn.host:a"], s.AllowedHosts);
    }

    [Fact]
    public void Config_errors_name_file_line_and_key()
    {
        string path = Path.GetTempFileName();
        File.WriteAllText(path, "listen: 127.0.0.1:6000\naux_count: 9\n");
        var e = Assert.Throws<UsageException>(() => CommandLine.ParseServe(["--config", path]));
        Assert.Contains($"{path}:2", e.Message);
        Assert.Contains("aux_count", e.Message);
        File.WriteAllText(path, "listen: 127.0.0.1:6000\nlisten_typo: 1\n");
        e = Assert.Throws<UsageException>(() => CommandLine.ParseServe(["--config", path]));
        Assert.Contains("listen_typo", e.Message);
        Assert.Contains("unknown key", e.Message);
    }

    [Fact]
    public void Every_config_key_is_read()
    {
        string path = Path.GetTempFileName();
        File.WriteAllText(path, """
            node_index: 3
            cluster: east-1
            nqn: nqn.2026-11.io.example:node3
            aux_count: 2
            listen: { address: 0.0.0.0:4420, advertise: 10.0.0.3 }
            discovery:
              address: 0.0.0.0:8009
              advertise: 10.0.0.33
            metrics: 0.0.0.0:9180
            control_socket: /run/duroslight/control.sock
            cores: 2-3
            devices: [/dev/nvme1n1]
            volumes:
              - { name: db, size: 10G }
            allowed_hosts: [nqn.host:a]
            hosts:
              aux-2: [nqn.host:b]
            max_controllers_per_pool: 100
            max_ctrl_io_queues: 64
            keep_alive: { discovery_default_ms: 30000 }
            referrals: [10.0.0.4:8009]
            drain_timeout_s: 5
            host_data_timeout_ms: 2500
            host_data_budget: 64M
            in_capsule_data: 128K
            """);
        var s = CommandLine.ParseServe(["--config", path, "--max-ctrl-io-queues", "16"]);
        Assert.Equal(3, s.NodeIndex);
        Assert.Equal("east-1", s.ClusterId);
        Assert.Equal("10.0.0.3", s.AdvertisedAddress);
        Assert.Equal("10.0.0.33", s.DiscoveryAdvertisedAddress);
        Assert.Equal("/run/duroslight/control.sock", s.ControlSocketPath);
        Assert.Equal([2, 3], s.Cores);
        Assert.Equal("/dev/nvme1n1", Assert.Single(s.Devices).Path);
        Assert.Equal(new VolumeSpec("db", 10L << 30), Assert.Single(s.Volumes));
        Assert.Equal(["nqn.host:b"], s.SubsystemHosts[2]);
        Assert.Equal(100, s.MaxControllersPerPool);
        Assert.Equal(16, s.MaxCtrlIoQueues);
        Assert.Equal(30000, s.DiscoveryKatoMs);
        Assert.Equal("10.0.0.4:8009", Assert.Single(s.Referrals).ToString());
        Assert.Equal(TimeSpan.FromSeconds(5), s.DrainTimeout);
        Assert.Equal(2500, s.HostDataTimeoutMs);
        Assert.Equal(64L << 20, s.HostDataBudgetPerShard);
        Assert.Equal(128 << 10, s.MaxInCapsuleData);
    }

    [Theory]
    [InlineData("listen:\n  address: 1.2.3.4:1\n  advertize: x\n", 3, "listen.advertize")]
    [InlineData("volumes:\n  - name: a\n    size: 3\n", 3, "volumes.size")]
    [InlineData("aux_count: 1\nhosts:\n  aux-3: [nqn.h:1]\n", 3, "hosts.aux-3")]
    [InlineData("keep_alive:\n  discovery_default_ms: 5\n", 2, "keep_alive.discovery_default_ms")]
    public void Nested_config_errors_name_the_line_and_the_dotted_key(string yaml, int line, string key)
    {
        string path = Path.GetTempFileName();
        File.WriteAllText(path, yaml.Replace("\\n", "\n"));
        var e = Assert.Throws<UsageException>(() => CommandLine.ParseServe(["--config", path]));
        Assert.Contains($"{path}:{line}: key '{key}'", e.Message);
    }

    [Fact]
    public void The_example_config_in_deploy_parses()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Duroslight.sln"))) dir = dir.Parent;
        Assert.NotNull(dir);
        var s = CommandLine.ParseServe(["--config", Path.Combine(dir.FullName, "deploy", "duroslight.yaml")]);
        Assert.Equal("/run/duroslight/control.sock", s.ControlSocketPath);
        Assert.Equal("192.0.2.10", s.AdvertisedAddress);
        Assert.Equal([0, 1, 2, 3], s.Cores);
    }

    [Fact]
    public void Help_and_the_readme_table_list_every_option_of_the_one_table()
    {
        string usage = CommandLine.Usage;
        var rows = File.ReadAllLines(Path.Combine(RepoRoot(), "README.md"))
            .Where(l => l.StartsWith("| `", StringComparison.Ordinal))
            .Select(l => l.Split('|', StringSplitOptions.TrimEntries))
            .Where(cells => cells.Length == 6 && ServeOptions.ByKey(cells[1].Trim('`')) is not null)
            .ToDictionary(cells => cells[1].Trim('`'), cells => cells[2]);
        foreach (var option in ServeOptions.All)
        {
            if (option.Flag is not null) Assert.Contains(option.Flag + (option.Value is null ? "" : " " + option.Value), usage);
            if (option.Key is null) continue;
            Assert.True(rows.ContainsKey(option.Key), $"README's configuration table has no row for '{option.Key}'");
            if (option.Flag is not null) Assert.Contains($"`{option.Flag}`", rows[option.Key]);
        }
    }

    [Fact]
    public void Cluster_is_a_name_or_a_mapping_with_etcd_urls_and_the_flags_override_it()
    {
        Assert.False(CommandLine.ParseServe([]).IsClustered);
        string path = Path.GetTempFileName();
        File.WriteAllText(path, "cluster:\n  name: prod\n  etcd: [http://10.0.0.1:2379, 'http://10.0.0.2:2379/']\n  lease_ttl_s: 5\n  rebuild_mib_s: 200\n");
        var s = CommandLine.ParseServe(["--config", path]);
        Assert.Equal("prod", s.ClusterId);
        Assert.Equal(["http://10.0.0.1:2379", "http://10.0.0.2:2379"], s.EtcdEndpoints);
        Assert.Equal(5, s.LeaseTtlSeconds);
        Assert.Equal(200, s.RebuildMiBPerSecond);
        Assert.True(s.IsClustered);
        s = CommandLine.ParseServe(["--config", path, "--etcd", "http://127.0.0.1:2379", "--cluster", "other", "--lease-ttl", "7", "--rebuild-rate", "0"]);
        Assert.Equal(["http://127.0.0.1:2379"], s.EtcdEndpoints);
        Assert.Equal(("other", 7, 0), (s.ClusterId, s.LeaseTtlSeconds, s.RebuildMiBPerSecond));
        Assert.Equal(64, CommandLine.ParseServe([]).RebuildMiBPerSecond);
        Assert.Throws<UsageException>(() => CommandLine.ParseServe(["--rebuild-rate", "-1"]));
        File.WriteAllText(path, "cluster: plain\n");
        Assert.Equal(("plain", false), (CommandLine.ParseServe(["--config", path]).ClusterId, CommandLine.ParseServe(["--config", path]).IsClustered));
        File.WriteAllText(path, "cluster:\n  etcd: [https://10.0.0.1:2379]\n");
        var e = Assert.Throws<UsageException>(() => CommandLine.ParseServe(["--config", path]));
        Assert.Contains("key 'cluster.etcd'", e.Message);
        File.WriteAllText(path, "cluster:\n  leader: 1\n");
        Assert.Contains("unknown key (name, etcd, lease_ttl_s, rebuild_mib_s)", Assert.Throws<UsageException>(() => CommandLine.ParseServe(["--config", path])).Message);
        Assert.Throws<UsageException>(() => CommandLine.ParseServe(["--etcd", "10.0.0.1:2379"]));
    }

    [Fact]
    public void Repeated_flags_replace_the_config_list()
    {
        string path = Path.GetTempFileName();
        File.WriteAllText(path, "allowed_hosts: [nqn.h:file]\nreferrals: [10.0.0.1:8009]\n");
        var s = CommandLine.ParseServe(["--config", path, "--allow-host", "nqn.h:1", "--allow-host", "nqn.h:2"]);
        Assert.Equal(["nqn.h:1", "nqn.h:2"], s.AllowedHosts);
        Assert.Equal("10.0.0.1:8009", Assert.Single(s.Referrals).ToString());
        Assert.True(CommandLine.ParseServe(["--memory"]).InMemory);
    }

    private static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Duroslight.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("no Duroslight.sln above the test binaries");
    }
}
