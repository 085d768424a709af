using System.Globalization;
using Duroslight.Server.Hosting;
using Duroslight.Storage.Gftl;

namespace Duroslight.Server.Metrics;

/// <summary>The GFTL's gauges: how the node started (and recovery progress), physical space, GC and write amplification.</summary>
internal static class GftlMetrics
{
    public static void Render(PrometheusText text, NodeHost node)
    {
        if (node.StoreRecovery is { } recovery)
        {
            text.Family("duroslight_gftl_start", "gauge", "How the GFTL started: 1 for formatted, checkpoint (graceful) or scan (abrupt).");
            foreach (GftlStartKind kind in Enum.GetValues<GftlStartKind>())
                text.Sample("duroslight_gftl_start", kind == recovery.Kind ? 1 : 0, ("kind", kind.ToString().ToLowerInvariant()));
            text.Family("duroslight_gftl_recovery_percent", "gauge", "Start-up recovery progress (100 when done).");
            text.Sample("duroslight_gftl_recovery_percent", recovery.Percent);
            text.Family("duroslight_gftl_recovery_mib_per_second", "gauge", "Device scan rate during an abrupt start.");
            text.Sample("duroslight_gftl_recovery_mib_per_second", recovery.MiBPerSecond);
            text.Family("duroslight_gftl_recovery_eta_seconds", "gauge", "Estimated time left in the device scan.");
            text.Sample("duroslight_gftl_recovery_eta_seconds", recovery.Eta.TotalSeconds);
        }

        if (node.Gftl is not { } store) return;
        text.Family("duroslight_gftl_physical_bytes", "gauge", "Physical space of the GFTL: capacity, and live data per device.");
        text.Sample("duroslight_gftl_physical_bytes", store.PhysicalCapacityBytes, ("type", "capacity"));
        for (int d = 0; d < store.DeviceCount; d++)
            text.Sample("duroslight_gftl_physical_bytes", store.DeviceUsedBytes(d), ("type", "used"), ("device", d.ToString(CultureInfo.InvariantCulture)));
        text.Family("duroslight_gftl_free_segments", "gauge", "Segments free for new writes.");
        text.Sample("duroslight_gftl_free_segments", store.FreeSegments);
        text.Family("duroslight_gftl_gc_segments_cleaned_total", "counter", "Segments the collector has freed since start.");
        text.Sample("duroslight_gftl_gc_segments_cleaned_total", store.GcSegmentsCleaned);
        text.Family("duroslight_gftl_write_amplification", "gauge", "Bytes written to the devices per byte of user data since start.");
        text.Sample("duroslight_gftl_write_amplification", store.WriteAmplification);
    }
}
