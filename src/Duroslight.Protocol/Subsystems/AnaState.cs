namespace Duroslight.Protocol.Subsystems;

/// <summary>
/// Asymmetric Namespace Access state of one ANA group as reported by this node's controllers (NVMe Base 2.0,
/// "Asymmetric Namespace Access Reporting"). Every namespace is its own ANA group (ANAGRPID = NSID): in a cluster
/// each volume has its own primary, so the groups cannot be shared across volumes.
/// </summary>
public enum AnaState : byte
{
    Optimized = 0x01,
    NonOptimized = 0x02,
    Inaccessible = 0x03,
    PersistentLoss = 0x04,
    Change = 0x0F,
}
