using System.Buffers.Binary;
using System.Text;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;

namespace Duroslight.Protocol.Tests.Nvme;

/// <summary>
/// Little readers for the layout tests. Tests address fields by the literal byte offsets of the spec tables
/// (NVMe Base 2.0, NVMe-oF 1.1), never by the encoder's constants, so a wrong constant cannot agree with itself.
/// </summary>
internal static class WireLayout
{
    public static ushort U16(byte[] b, int off) => BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(off));
    public static uint U32(byte[] b, int off) => BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(off));
    public static ulong U64(byte[] b, int off) => BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(off));
    public static UInt128 U128(byte[] b, int off) => BinaryPrimitives.ReadUInt128LittleEndian(b.AsSpan(off));
    public static string Text(byte[] b, int off, int len) => Encoding.ASCII.GetString(b, off, len);

    public static bool AllZero(byte[] b, int from, int to) => b.AsSpan(from, to - from).IndexOfAnyExcept((byte)0) < 0;

    /// <summary>A buffer pre-filled with garbage, as a pooled buffer would be.</summary>
    public static byte[] Dirty(int size)
    {
        var b = new byte[size];
        b.AsSpan().Fill(0xA5);
        return b;
    }

    public static ControllerIdentity IoController(ControllerType type = ControllerType.Io) => new()
    {
        Cntlid = 0x1234,
        Type = type,
        SerialNumber = "DL-0001",
        ModelNumber = "Duroslight NVMe/TCP",
        FirmwareRevision = "0.1.0",
        SubsystemNqn = "nqn.2024-01.io.duroslight:subsys1",
        Version = 0x0002_0000,
        Mdts = 5,
        KeepAliveSupport = 100,
        IoCommandCapsuleSize16 = (64 + 8192) / 16,
        IoResponseCapsuleSize16 = 1,
        NamespaceCount = 1024,
        MaxCommands = 128,
        Oaes = 1u << 8,
        AerLimit = 3,
        VolatileWriteCache = true,
        IeeeOui = 0x5C_D2E4,
    };

    public static readonly Guid VolumeId = Guid.Parse("00112233-4455-6677-8899-aabbccddeeff");

    /// <summary>The UUID above in RFC 4122 (text) byte order.</summary>
    public static readonly byte[] VolumeIdBigEndian =
        [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF];

    public static NamespaceInfo Namespace(long blocks = 2_000_000, int blockSize = 4096, Func<long>? allocated = null) =>
        new(7, VolumeId, blocks, blockSize) { AllocatedBlocks = allocated };
}
