using Duroslight.Server.Cli;
using Xunit;

namespace Duroslight.Server.Tests;

/// <summary>--store, --device and their config keys.</summary>
public sealed class StoreSettingsTests
{
    [Fact]
    public void The_gftl_over_a_file_in_the_data_dir_is_the_default()
    {
        var s = CommandLine.ParseServe([]);
        Assert.Equal("gftl", s.StoreKind);
        Assert.Empty(s.Devices);
        Assert.False(s.InMemory);
    }

    [Fact]
    public void Devices_keep_their_order_and_optional_size()
    {
        var s = CommandLine.ParseServe(["--device", "/dev/nvme0n1", "--device", "/tmp/d1.img:64M", "--store", "gftl"]);
        Assert.Equal(["/dev/nvme0n1", "/tmp/d1.img"], s.Devices.Select(d => d.Path));
        Assert.Equal([null, 64L << 20], s.Devices.Select(d => d.SizeBytes));
        Assert.True(CommandLine.ParseServe(["--store", "memory"]).InMemory);
        Assert.Equal("sparse", CommandLine.ParseServe(["--store", "sparse"]).StoreKind);
    }

    [Fact]
    public void Bad_store_and_device_values_are_refused()
    {
        Assert.Contains("gftl, sparse, memory", Assert.Throws<UsageException>(() => CommandLine.ParseServe(["--store", "zfs"])).Message);
        Assert.Contains("not a size", Assert.Throws<UsageException>(() => CommandLine.ParseServe(["--device", "/tmp/x:12Q"])).Message);
    }

    [Fact]
    public void Config_file_lists_devices()
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "store: gftl\ndevices:\n  - /tmp/a.img:1G\n  - /dev/loop3\n");
            var s = CommandLine.ParseServe(["--config", path]);
            Assert.Equal(["/tmp/a.img", "/dev/loop3"], s.Devices.Select(d => d.Path));
            Assert.Equal(1L << 30, s.Devices[0].SizeBytes);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
