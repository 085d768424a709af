using System.Diagnostics;
using System.Globalization;

namespace Duroslight.Storage.Gftl;

public enum GftlStartKind
{
    /// <summary>Blank devices were formatted.</summary>
    Formatted,

    /// <summary>Graceful: the map came from the checkpoint written at the last clean shutdown.</summary>
    Checkpoint,

    /// <summary>Abrupt: no valid checkpoint, so every device was scanned and the map rebuilt from the records.</summary>
    Scan,
}

/// <summary>Where start-up recovery stands; readable at any time (metrics, status).</summary>
public sealed record GftlRecoveryProgress(GftlStartKind Kind, bool Done, double Percent, long BytesDone, long BytesTotal, double MiBPerSecond, TimeSpan Eta, TimeSpan Elapsed);

/// <summary>Follows a device scan: updates <see cref="Current"/> as it goes and logs about once a second.</summary>
internal sealed class RecoveryTracker(GftlStartKind kind, long bytesTotal, GftlOptions options)
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private long _bytesDone;
    private long _lastLogMs = -1000;

    public GftlRecoveryProgress Current { get; private set; } = new(kind, false, 0, 0, bytesTotal, 0, TimeSpan.Zero, TimeSpan.Zero);

    public void Advance(long bytes)
    {
        _bytesDone += bytes;
        double seconds = Math.Max(_clock.Elapsed.TotalSeconds, 1e-6);
        double rate = _bytesDone / seconds;
        TimeSpan eta = TimeSpan.FromSeconds(rate > 0 ? (bytesTotal - _bytesDone) / rate : 0);
        Current = new GftlRecoveryProgress(kind, false, bytesTotal == 0 ? 100 : 100.0 * _bytesDone / bytesTotal, _bytesDone, bytesTotal, rate / (1 << 20), eta, _clock.Elapsed);
        options.Progress?.Invoke(Current);
        if (_clock.ElapsedMilliseconds - _lastLogMs >= 1000)
        {
            _lastLogMs = _clock.ElapsedMilliseconds;
            options.Log?.Invoke(string.Create(CultureInfo.InvariantCulture,
                $"GFTL scan {Current.Percent:F1}% ({_bytesDone >> 20} of {bytesTotal >> 20} MiB, {Current.MiBPerSecond:F0} MiB/s, ETA {eta.TotalSeconds:F0} s)"));
        }
    }

    public GftlRecoveryProgress Finish()
    {
        Current = Current with { Done = true, Percent = 100, BytesDone = bytesTotal, Eta = TimeSpan.Zero, Elapsed = _clock.Elapsed };
        options.Progress?.Invoke(Current);
        return Current;
    }
}
