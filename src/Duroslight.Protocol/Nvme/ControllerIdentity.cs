namespace Duroslight.Protocol.Nvme;

/// <summary>Identify Controller CNTRLTYPE (byte 111).</summary>
public enum ControllerType : byte
{
    Io = 1,
    Discovery = 2,
    Admin = 3,
}

/// <summary>
/// Everything Identify Controller (CNS 01h) reports about one controller; built by the engine, encoded by
/// <see cref="IdentifyPages.Controller"/>.
/// </summary>
public sealed record ControllerIdentity
{
    public required ushort Cntlid { get; init; }
    public required ControllerType Type { get; init; }
    public required string SerialNumber { get; init; }
    public required string ModelNumber { get; init; }
    public required string FirmwareRevision { get; init; }
    public required string SubsystemNqn { get; init; }
    /// <summary>VER, equal to the VS property (e.g. 0x00010300 for 1.3).</summary>
    public required uint Version { get; init; }
    /// <summary>MDTS: max transfer is 2^Mdts * 4 KiB (CAP.MPSMIN = 4 KiB); 0 = no limit.</summary>
    public required byte Mdts { get; init; }
    /// <summary>KAS: keep-alive granularity in 100 ms units; must be non-zero.</summary>
    public required ushort KeepAliveSupport { get; init; }
    /// <summary>IOCCSZ: I/O command capsule size in 16-byte units (64-byte SQE + in-capsule data).</summary>
    public required uint IoCommandCapsuleSize16 { get; init; }
    /// <summary>IORCSZ: I/O response capsule size in 16-byte units (1 = the 16-byte CQE).</summary>
    public required uint IoResponseCapsuleSize16 { get; init; }
    /// <summary>NN: the largest namespace ID the controller supports.</summary>
    public required uint NamespaceCount { get; init; }
    /// <summary>MAXCMD: max outstanding commands per I/O queue.</summary>
    public required ushort MaxCommands { get; init; }
    /// <summary>OAES: asynchronous events supported (bit 8 ns attribute, bit 31 discovery log change).</summary>
    public required uint Oaes { get; init; }
    /// <summary>AERL: 0's based number of concurrently outstanding AERs.</summary>
    public required byte AerLimit { get; init; }
    /// <summary>VWC present (bit 0): the host must send Flush for durability.</summary>
    public required bool VolatileWriteCache { get; init; }
    /// <summary>CMIC bit 1: the subsystem may contain several controllers (multi-attach).</summary>
    public bool MultiController { get; init; } = true;
    /// <summary>
    /// CMIC bit 3 and the ANA fields (ANATT, ANACAP, ANAGRPMAX, NANAGRPID, MNAN): the controller reports Asymmetric
    /// Namespace Access, one group per namespace. I/O controllers only.
    /// </summary>
    public bool AnaReporting { get; init; }
    /// <summary>IEEE OUI (3 bytes, little-endian in the page); 0 when unassigned.</summary>
    public uint IeeeOui { get; init; }
}
