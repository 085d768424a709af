using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Nvme;
using Duroslight.Storage.Volumes;

namespace Duroslight.Server.Execution;

/// <summary>How a storage result becomes the NVMe status of the command.</summary>
public static class StorageStatus
{
    public static NvmeStatus ToNvme(StorageResult result, StorageOp op) => result switch
    {
        StorageResult.Ok => NvmeStatus.Success,
        StorageResult.OutOfSpace => NvmeStatus.CapacityExceeded,
        StorageResult.OutOfRange => NvmeStatus.LbaOutOfRange,
        StorageResult.WriteProtected => NvmeStatus.NamespaceWriteProtected,
        // The device will not come back while the process runs: Namespace Not Ready with Do Not Retry, so a host
        // stops at once instead of retrying a dead device (Linux: BLK_STS_TARGET).
        StorageResult.DeviceFailed => NvmeStatus.NamespaceNotReady.WithDnr(),
        _ => op == StorageOp.Read ? NvmeStatus.UnrecoveredReadError : NvmeStatus.WriteFault,
    };
}
