using System.Buffers.Binary;
using Duroslight.Protocol.Nvme;

namespace Duroslight.Host;

/// <summary>The 1024-byte data of a Fabrics Connect command (NVMe-oF 1.1 "Connect Command Data").</summary>
public static class ConnectData
{
    public const int Size = 1024;

    /// <summary>CNTLID the admin-queue Connect carries under the dynamic controller model.</summary>
    public const ushort DynamicCntlid = 0xFFFF;

    /// <summary>HOSTID (0..15, RFC 4122 byte order), CNTLID (16..17), SUBNQN (256..511), HOSTNQN (512..767).</summary>
    public static void Write(Span<byte> destination, Guid hostId, ushort cntlid, string subsystemNqn, string hostNqn)
    {
        if (destination.Length < Size) throw new ArgumentException($"Connect data needs {Size} bytes", nameof(destination));
        var d = destination[..Size];
        d.Clear();
        hostId.TryWriteBytes(d, bigEndian: true, out _);
        BinaryPrimitives.WriteUInt16LittleEndian(d[16..], cntlid);
        WireStrings.WriteNqn(d.Slice(256, 256), subsystemNqn);
        WireStrings.WriteNqn(d.Slice(512, 256), hostNqn);
    }

    public static byte[] Create(Guid hostId, ushort cntlid, string subsystemNqn, string hostNqn)
    {
        var data = new byte[Size];
        Write(data, hostId, cntlid, subsystemNqn, hostNqn);
        return data;
    }
}
