using System.Globalization;
using System.Runtime.CompilerServices;
using Duroslight.Core;
using Duroslight.Core.Interop;
using Microsoft.Win32.SafeHandles;

namespace Duroslight.Storage.Devices;

/// <summary>
/// TEST INSTRUMENTATION for device-fault tests; never on unless <see cref="FaultRules.EnvironmentVariable"/> names a
/// rules file (the server then logs a warning at start). Wraps an <see cref="IBlockIo"/> and, for the operations the
/// current <see cref="FaultRules"/> select, returns EIO or ENOSPC without calling the device, transfers only half
/// the buffer (a short transfer), or stalls the operation until the rules change. Costs a rule scan per I/O and,
/// when a rule names a path, one path lookup per handle: for tests only. A ring-backed <paramref name="inner"/> takes
/// submissions only on its owner's thread: <paramref name="onOwner"/> runs an action there, so that a stalled
/// operation, released from the rules' timer thread, is submitted (and its caller resumed) where it belongs.
/// </summary>
public sealed class FaultInjectingBlockIo(IBlockIo inner, FaultRules rules, Action<Action>? onOwner = null) : IBlockIo
{
    private static readonly ConditionalWeakTable<SafeFileHandle, string> s_paths = [];

    public ValueTask<int> ReadAsync(SafeFileHandle file, Memory<byte> buffer, long offset) =>
        Pick(FaultOps.Read, file) switch
        {
            null => inner.ReadAsync(file, buffer, offset),
            { Fault: FaultKind.Short } => inner.ReadAsync(file, buffer[..ShortLength(buffer.Length)], offset),
            { Fault: FaultKind.Stall } => Stalled(() => inner.ReadAsync(file, buffer, offset)),
            var rule => new(rule.Errno),
        };

    public ValueTask<int> WriteAsync(SafeFileHandle file, ReadOnlyMemory<byte> buffer, long offset) =>
        Pick(FaultOps.Write, file) switch
        {
            null => inner.WriteAsync(file, buffer, offset),
            { Fault: FaultKind.Short } => inner.WriteAsync(file, buffer[..ShortLength(buffer.Length)], offset),
            { Fault: FaultKind.Stall } => Stalled(() => inner.WriteAsync(file, buffer, offset)),
            var rule => new(rule.Errno),
        };

    public ValueTask<int> SyncAsync(SafeFileHandle file) =>
        Pick(FaultOps.Sync, file) switch
        {
            null or { Fault: FaultKind.Short } => inner.SyncAsync(file),
            { Fault: FaultKind.Stall } => Stalled(() => inner.SyncAsync(file)),
            var rule => new(rule.Errno),
        };

    /// <summary>Half the transfer, kept a multiple of 4 KiB so that O_DIRECT files accept it (0 if it cannot be).</summary>
    private static int ShortLength(int length) => length / 2 / 4096 * 4096;

    private FaultRule? Pick(FaultOps op, SafeFileHandle file)
    {
        FaultRule[] current = rules.Current;
        string? path = null;
        foreach (FaultRule rule in current)
        {
            if ((rule.Ops & op) == 0) continue;
            if (rule.PathContains is { } part && !(path ??= PathOf(file)).Contains(part, StringComparison.Ordinal)) continue;
            if (rule.Fires()) return rule;
        }

        return null;
    }

    /// <summary>Waits for the rules to change, then runs the operation on the device (on the owner's thread).</summary>
    private async ValueTask<int> Stalled(Func<ValueTask<int>> operation)
    {
        await rules.Changed.ConfigureAwait(false);
        if (onOwner is null) return await operation().ConfigureAwait(false);

        // Completed on the owner's thread, inline: the caller continues there, as after any ring completion.
        var done = new TaskCompletionSource<int>();
        onOwner(() => Complete(operation(), done));
        return await done.Task.ConfigureAwait(false);
    }

    private static async void Complete(ValueTask<int> operation, TaskCompletionSource<int> done) =>
        done.SetResult(await operation.ConfigureAwait(false));

    private static string PathOf(SafeFileHandle file) =>
        s_paths.GetValue(file, static f =>
            File.ResolveLinkTarget($"/proc/self/fd/{f.DangerousGetHandle()}", returnFinalTarget: false)?.FullName ?? "");
}

[Flags]
public enum FaultOps
{
    Read = 1,
    Write = 2,
    Sync = 4,
}

public enum FaultKind
{
    Eio,
    Enospc,
    Short,
    Stall,
}

/// <summary>
/// One line of a rules file: <c>OPS FAULT [path=PART] [every=N] [probability=P]</c>, where OPS is read, write, sync or
/// a comma-separated list of them, FAULT is eio, enospc, short or stall, PART a substring of the device's path, and
/// the rule fires on every Nth matching operation or with probability P (on every one if neither is given). A short
/// sync is a plain sync: fdatasync has no length.
/// </summary>
public sealed class FaultRule
{
    private long _count;

    public required FaultOps Ops { get; init; }
    public required FaultKind Fault { get; init; }
    public string? PathContains { get; init; }
    public int Every { get; init; }
    public double Probability { get; init; }

    public int Errno => Fault == FaultKind.Enospc ? -LibC.ENOSPC : -LibC.EIO;

    internal bool Fires()
    {
        if (Probability > 0) return Random.Shared.NextDouble() < Probability;
        long n = Interlocked.Increment(ref _count);
        return Every <= 1 || n % Every == 0;
    }

    /// <summary>Parses one line; throws <see cref="FormatException"/> naming what is wrong.</summary>
    public static FaultRule Parse(string line)
    {
        string[] words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (words.Length < 2) throw new FormatException($"fault rule needs OPS and FAULT: '{line}'");
        FaultOps ops = 0;
        foreach (string op in words[0].Split(','))
        {
            ops |= op switch
            {
                "read" => FaultOps.Read,
                "write" => FaultOps.Write,
                "sync" => FaultOps.Sync,
                _ => throw new FormatException($"unknown operation '{op}' in '{line}'"),
            };
        }

        FaultKind fault = words[1] switch
        {
            "eio" => FaultKind.Eio,
            "enospc" => FaultKind.Enospc,
            "short" => FaultKind.Short,
            "stall" => FaultKind.Stall,
            _ => throw new FormatException($"unknown fault '{words[1]}' in '{line}'"),
        };
        string? path = null;
        int every = 0;
        double probability = 0;
        foreach (string option in words.AsSpan(2))
        {
            int eq = option.IndexOf('=');
            string key = eq < 0 ? option : option[..eq];
            string value = eq < 0 ? "" : option[(eq + 1)..];
            switch (key)
            {
                case "path" when value.Length > 0:
                    path = value;
                    break;
                case "every" when int.TryParse(value, CultureInfo.InvariantCulture, out every) && every > 0:
                    break;
                case "probability" when double.TryParse(value, CultureInfo.InvariantCulture, out probability) && probability is > 0 and <= 1:
                    break;
                default:
                    throw new FormatException($"bad option '{option}' in '{line}'");
            }
        }

        return new FaultRule { Ops = ops, Fault = fault, PathContains = path, Every = every, Probability = probability };
    }
}

/// <summary>
/// The fault rules every <see cref="FaultInjectingBlockIo"/> of the process consults, switchable at runtime. Each
/// change releases the operations stalled so far (they then run on the device).
/// </summary>
public sealed class FaultRules : IDisposable
{
    public const string EnvironmentVariable = "DUROSLIGHT_TEST_ONLY_FAULTS";

    private readonly object _gate = new();
    private volatile FaultRule[] _current = [];
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Timer? _watch;
    private DateTime _seenWrite;
    private long _seenLength = -1;

    /// <summary>The rules file the environment names, or null when fault injection is off.</summary>
    public static string? RequestedFile => Environment.GetEnvironmentVariable(EnvironmentVariable) is { Length: > 0 } path ? path : null;

    public FaultRule[] Current => _current;

    /// <summary>Completes at the next change of the rules.</summary>
    public Task Changed
    {
        get
        {
            lock (_gate) return _changed.Task;
        }
    }

    public void Set(FaultRule[] rules)
    {
        TaskCompletionSource released;
        lock (_gate)
        {
            _current = rules;
            released = _changed;
            _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        released.TrySetResult();
    }

    /// <summary>Parses a rules file's text: one rule a line; blank lines and lines starting with '#' are skipped.</summary>
    public static FaultRule[] Parse(string text)
    {
        var rules = new List<FaultRule>();
        foreach (string raw in text.Split('\n'))
        {
            string line = raw.Trim();
            if (line.Length == 0 || line[0] == '#') continue;
            rules.Add(FaultRule.Parse(line));
        }

        return [.. rules];
    }

    /// <summary>
    /// Loads <paramref name="path"/> now and re-reads it whenever its modification time or length changes, polled on a
    /// timer (not per I/O). A missing file means no rules; a bad one keeps the rules in force and reports through
    /// <paramref name="warn"/>; <paramref name="applied"/> hears the count of each set of rules put in force.
    /// </summary>
    public static FaultRules Watch(string path, Action<string> warn, Action<int>? applied = null, TimeSpan? period = null)
    {
        var rules = new FaultRules();
        rules.Reload(path, warn, applied);
        TimeSpan every = period ?? TimeSpan.FromMilliseconds(100);
        rules._watch = new Timer(_ => rules.Reload(path, warn, applied), null, every, every);
        return rules;
    }

    private void Reload(string path, Action<string> warn, Action<int>? applied)
    {
        lock (_gate)
        {
            var info = new FileInfo(path);
            DateTime written = info.Exists ? info.LastWriteTimeUtc : default;
            long length = info.Exists ? info.Length : 0;
            if (written == _seenWrite && length == _seenLength) return;
            _seenWrite = written;
            _seenLength = length;
        }

        try
        {
            FaultRule[] rules = File.Exists(path) ? Parse(File.ReadAllText(path)) : [];
            Set(rules);
            applied?.Invoke(rules.Length);
        }
        catch (Exception e) when (e is FormatException or IOException)
        {
            warn($"fault rules file {path} not applied: {e.Message}");
        }
    }

    /// <summary>Stops watching and clears the rules, releasing stalled operations.</summary>
    public void Dispose()
    {
        _watch?.Dispose();
        Set([]);
    }
}
