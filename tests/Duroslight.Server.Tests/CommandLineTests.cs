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
}
