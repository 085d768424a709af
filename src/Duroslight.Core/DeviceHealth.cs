using System.Runtime.CompilerServices;
using Duroslight.Core.Interop;
using Microsoft.Win32.SafeHandles;

namespace Duroslight.Core;

/// <summary>When a device is taken out of service: node-wide, set once at start (<see cref="DeviceHealth.Options"/>).</summary>
public sealed record DeviceHealthOptions
{
    /// <summary>This many I/O errors ...; 0: errors never take a device out of service.</summary>
    public int ErrorThreshold { get; init; } = 32;

    /// <summary>... within this many milliseconds.</summary>
    public int ErrorWindowMs { get; init; } = 60_000;

    /// <summary>I/O outstanding and none completing this long marks the device failed; 0 off.</summary>
    public int StallTimeoutMs { get; init; } = 60_000;
}

/// <summary>
/// "N errors within W ms": remembers the times of the last N errors (a ring) and trips when the oldest of them is
/// at most W ms before the newest. Not thread-safe (the caller locks; errors are rare).
/// </summary>
public sealed class ErrorWindow(int threshold, long windowMs)
{
    private readonly long[] _times = new long[Math.Max(threshold, 1)];
    private int _count;
    private int _next;

    /// <summary>Records an error at <paramref name="nowMs"/> (non-decreasing); true once the threshold is reached.</summary>
    public bool Add(long nowMs)
    {
        if (threshold <= 0) return false;
        _times[_next] = nowMs;
        _next = (_next + 1) % _times.Length;
        if (_count < _times.Length) _count++;
        // Full ring: _next now points at the oldest of the last N.
        return _count == _times.Length && nowMs - _times[_next % _times.Length] <= windowMs;
    }
}

/// <summary>
/// The health of one device (a GFTL device, a sparse volume's file): I/O errors counted in a window, in-flight I/O
/// watched for a stall, and the failed state they lead to, which stays until the process restarts. Counted in one
/// place, <see cref="HealthCheckedBlockIo"/>, which finds a device by its handle (registered by whoever opened it)
/// and answers ENODEV at once, without touching the device, once it failed. Volumes check <see cref="Failed"/>
/// first to answer a clear status.
/// </summary>
public sealed class DeviceHealth
{
    private static readonly ConditionalWeakTable<SafeFileHandle, DeviceHealth> s_byHandle = [];
    private static readonly List<DeviceHealth> s_all = [];

    private readonly object _gate = new();
    private readonly ErrorWindow _window;
    private readonly DeviceHealthOptions _options;
    private volatile bool _failed;
    private long _errors;
    private int _inFlight;
    private long _lastProgressMs;

    private DeviceHealth(string name, string kind, DeviceHealthOptions options)
    {
        Name = name;
        Kind = kind;
        _options = options;
        _window = new ErrorWindow(options.ErrorThreshold, options.ErrorWindowMs);
    }

    /// <summary>Thresholds for devices registered from now on.</summary>
    public static DeviceHealthOptions Options { get; set; } = new();

    /// <summary>Raised once per device, on the thread that saw the last error or the stall, when it fails.</summary>
    public static event Action<DeviceHealth>? DeviceFailed;

    public string Name { get; }

    /// <summary>What the device is: <c>gftl</c> (a device of the GFTL set) or <c>sparse</c> (one volume's file).</summary>
    public string Kind { get; }

    public bool Failed => _failed;

    public string? Reason { get; private set; }

    public DateTime? FailedAt { get; private set; }

    /// <summary>I/O errors since the device was opened.</summary>
    public long Errors => Interlocked.Read(ref _errors);

    /// <summary>Device operations submitted and not yet completed.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>Every registered device, in registration order.</summary>
    public static DeviceHealth[] All
    {
        get
        {
            lock (s_all) return [.. s_all];
        }
    }

    /// <summary>Starts watching the device behind <paramref name="handle"/> until <see cref="Unregister"/>.</summary>
    public static DeviceHealth Register(SafeFileHandle handle, string name, string kind, DeviceHealthOptions? options = null)
    {
        var health = new DeviceHealth(name, kind, options ?? Options);
        s_byHandle.AddOrUpdate(handle, health);
        lock (s_all) s_all.Add(health);
        return health;
    }

    public static void Unregister(SafeFileHandle handle)
    {
        if (!s_byHandle.TryGetValue(handle, out DeviceHealth? health)) return;
        s_byHandle.Remove(handle);
        lock (s_all) s_all.Remove(health);
    }

    /// <summary>Lock-free lookup; false for files nobody registered (metadata, tests).</summary>
    public static bool TryFind(SafeFileHandle handle, out DeviceHealth health) => s_byHandle.TryGetValue(handle, out health!);

    /// <summary>Fails every registered device that has had I/O outstanding and none complete for the stall bound.</summary>
    public static void CheckStalls(long nowMs)
    {
        foreach (DeviceHealth health in All) health.CheckStall(nowMs);
    }

    /// <summary>Takes the device out of service (once); later calls keep the first reason.</summary>
    public bool Fail(string reason)
    {
        lock (_gate)
        {
            if (_failed) return false;
            Reason = reason;
            FailedAt = DateTime.UtcNow;
            _failed = true;
        }

        DeviceFailed?.Invoke(this);
        return true;
    }

    /// <summary>An operation goes to the device. The progress clock restarts when the device was idle.</summary>
    internal void Started(long nowMs)
    {
        if (Volatile.Read(ref _inFlight) == 0) Volatile.Write(ref _lastProgressMs, nowMs);
        Interlocked.Increment(ref _inFlight);
    }

    /// <summary>An operation came back with <paramref name="result"/> (bytes, or a negative errno).</summary>
    internal void Finished(int result, long nowMs)
    {
        Volatile.Write(ref _lastProgressMs, nowMs);
        Interlocked.Decrement(ref _inFlight);
        if (result < 0 && IsDeviceError(-result)) OnError(-result, nowMs);
    }

    /// <summary>Out of space is the store's, not the device's, and ENODEV is this class's own refusal.</summary>
    private static bool IsDeviceError(int errno) =>
        errno is not (LibC.ENOSPC or LibC.EDQUOT or LibC.ENODEV or LibC.ECANCELED);

    private void OnError(int errno, long nowMs)
    {
        Interlocked.Increment(ref _errors);
        bool trip;
        lock (_gate) trip = _window.Add(nowMs);
        if (trip) Fail($"{_options.ErrorThreshold} I/O errors within {_options.ErrorWindowMs} ms (last errno {errno})");
    }

    public void CheckStall(long nowMs)
    {
        int bound = _options.StallTimeoutMs;
        if (bound <= 0 || _failed || Volatile.Read(ref _inFlight) == 0) return;
        long since = nowMs - Volatile.Read(ref _lastProgressMs);
        if (since > bound) Fail($"I/O outstanding with none completing for {since} ms (stall bound {bound} ms)");
    }
}
