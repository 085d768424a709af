using Duroslight.Core;
using Duroslight.Core.Interop;
using Duroslight.Storage.Devices;
using Duroslight.Tests.Shared;
using Microsoft.Win32.SafeHandles;

namespace Duroslight.Storage.Tests.Devices;

public sealed class FaultInjectingBlockIoTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly FaultRules _rules = new();
    private readonly SafeFileHandle _a;
    private readonly SafeFileHandle _b;
    private readonly FaultInjectingBlockIo _io;

    public FaultInjectingBlockIoTests()
    {
        _a = Open("a.dev");
        _b = Open("b.dev");
        _io = new FaultInjectingBlockIo(SyncBlockIo.Instance, _rules);
    }

    public void Dispose()
    {
        _rules.Dispose();
        _a.Dispose();
        _b.Dispose();
        _dir.Dispose();
    }

    [Fact]
    public async Task Without_rules_every_operation_reaches_the_device()
    {
        byte[] data = Filled(8192, 7);

        Assert.Equal(8192, await _io.WriteAsync(_a, data, 0));
        Assert.Equal(0, await _io.SyncAsync(_a));
        byte[] back = new byte[8192];
        Assert.Equal(8192, await _io.ReadAsync(_a, back, 0));
        Assert.Equal(data, back);
    }

    [Fact]
    public async Task A_read_rule_fails_reads_with_eio_and_leaves_writes_and_syncs_alone()
    {
        _rules.Set(FaultRules.Parse("read eio"));

        Assert.Equal(-LibC.EIO, await _io.ReadAsync(_a, new byte[4096], 0));
        Assert.Equal(4096, await _io.WriteAsync(_a, Filled(4096, 1), 0));
        Assert.Equal(0, await _io.SyncAsync(_a));
    }

    [Fact]
    public async Task A_failed_write_does_not_reach_the_device()
    {
        Assert.Equal(4096, await _io.WriteAsync(_a, Filled(4096, 1), 0));
        _rules.Set(FaultRules.Parse("write,sync enospc"));

        Assert.Equal(-LibC.ENOSPC, await _io.WriteAsync(_a, Filled(4096, 2), 0));
        Assert.Equal(-LibC.ENOSPC, await _io.SyncAsync(_a));
        byte[] back = new byte[4096];
        Assert.Equal(4096, await _io.ReadAsync(_a, back, 0));
        Assert.Equal(Filled(4096, 1), back);
    }

    [Fact]
    public async Task A_path_rule_fails_only_the_device_it_names()
    {
        _rules.Set(FaultRules.Parse("write eio path=b.dev"));

        Assert.Equal(4096, await _io.WriteAsync(_a, Filled(4096, 1), 0));
        Assert.Equal(-LibC.EIO, await _io.WriteAsync(_b, Filled(4096, 1), 0));
    }

    [Fact]
    public async Task An_every_rule_fails_each_nth_matching_operation()
    {
        _rules.Set(FaultRules.Parse("read eio every=3"));
        var results = new List<int>();
        for (int i = 0; i < 7; i++) results.Add(await _io.ReadAsync(_a, new byte[4096], 0));

        Assert.Equal([0, 0, -LibC.EIO, 0, 0, -LibC.EIO, 0], results);
    }

    [Fact]
    public async Task A_probability_rule_fails_some_operations_and_not_others()
    {
        _rules.Set(FaultRules.Parse("read eio probability=0.5"));
        int failed = 0;
        for (int i = 0; i < 400; i++) failed += await _io.ReadAsync(_a, new byte[4096], 0) < 0 ? 1 : 0;

        // Binomial(400, 0.5): outside 100..300 has probability far below 1e-20.
        Assert.InRange(failed, 100, 300);
    }

    [Fact]
    public async Task A_short_rule_transfers_half_the_buffer_in_whole_pages()
    {
        _rules.Set(FaultRules.Parse("write short"));

        Assert.Equal(8192, await _io.WriteAsync(_a, Filled(16384, 3), 0));
        Assert.Equal(0, await _io.WriteAsync(_a, Filled(4096, 3), 0));
        Assert.Equal(8192, RandomAccess.GetLength(_a));
    }

    [Fact]
    public async Task A_stalled_operation_completes_on_the_device_once_the_rules_change()
    {
        _rules.Set(FaultRules.Parse("write stall"));

        ValueTask<int> write = _io.WriteAsync(_a, Filled(4096, 9), 0);
        Task<int> stalled = write.AsTask();
        await Task.Delay(50);
        Assert.False(stalled.IsCompleted);
        Assert.Equal(0, RandomAccess.GetLength(_a));

        _rules.Set([]);

        Assert.Equal(4096, await stalled.WaitAsync(Eventually.DefaultLimit));
        Assert.Equal(4096, RandomAccess.GetLength(_a));
    }

    [Fact]
    public async Task A_watched_file_switches_the_rules_at_runtime()
    {
        string file = Path.Combine(_dir.Path, "faults");
        var warnings = new List<string>();
        using FaultRules watched = FaultRules.Watch(file, warnings.Add, period: TimeSpan.FromMilliseconds(20));
        var io = new FaultInjectingBlockIo(SyncBlockIo.Instance, watched);
        Assert.Equal(0, await io.ReadAsync(_a, new byte[4096], 0));

        WriteAtomically(file, "# reads of a fail\nread eio path=a.dev\n");
        await Eventually.Until(() => watched.Current.Length == 1, "the rules file is read");
        Assert.Equal(-LibC.EIO, await io.ReadAsync(_a, new byte[4096], 0));

        WriteAtomically(file, "read bogus\n");
        await Eventually.Until(() => warnings.Count > 0, "a bad rules file is reported");
        Assert.Single(watched.Current);

        File.Delete(file);
        await Eventually.Until(() => watched.Current.Length == 0, "a removed rules file clears the rules");
        Assert.Equal(0, await io.ReadAsync(_a, new byte[4096], 0));
    }

    [Theory]
    [InlineData("read")]
    [InlineData("read explode")]
    [InlineData("erase eio")]
    [InlineData("read eio every=0")]
    [InlineData("read eio probability=2")]
    [InlineData("read eio path=")]
    [InlineData("read eio sometimes")]
    public void Bad_rules_are_refused(string line) => Assert.Throws<FormatException>(() => FaultRule.Parse(line));

    [Fact]
    public void A_rule_line_parses_every_field()
    {
        FaultRule rule = FaultRule.Parse("read,sync enospc path=/dev/x every=4");

        Assert.Equal(FaultOps.Read | FaultOps.Sync, rule.Ops);
        Assert.Equal(FaultKind.Enospc, rule.Fault);
        Assert.Equal("/dev/x", rule.PathContains);
        Assert.Equal(4, rule.Every);
    }

    private SafeFileHandle Open(string name) =>
        File.OpenHandle(Path.Combine(_dir.Path, name), FileMode.Create, FileAccess.ReadWrite);

    private static byte[] Filled(int length, byte value)
    {
        byte[] data = new byte[length];
        Array.Fill(data, value);
        return data;
    }

    private static void WriteAtomically(string path, string text)
    {
        File.WriteAllText(path + ".tmp", text);
        File.Move(path + ".tmp", path, overwrite: true);
    }
}
