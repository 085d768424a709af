namespace Duroslight.Server.Metrics;

/// <summary>What the GFTL store reports about its space, write amplification and recovery; read at scrape time.</summary>
public interface IGftlStats
{
    long CapacityBytes { get; }
    long FreeBytes { get; }
    /// <summary>Device bytes written / host bytes written since start (1.0 with no GC).</summary>
    double WriteAmplification { get; }
    /// <summary>Recovery (log replay) progress 0..1; 1 once recovered.</summary>
    double RecoveryProgress { get; }
}
