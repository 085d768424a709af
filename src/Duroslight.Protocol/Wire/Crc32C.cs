using System.Buffers.Binary;
using System.Numerics;

namespace Duroslight.Protocol.Wire;

/// <summary>
/// CRC32C (Castagnoli) as NVMe/TCP header and data digests use it: seed ~0, final xor ~0, stored little-endian.
/// <see cref="BitOperations.Crc32C(uint, ulong)"/> maps to the SSE4.2/ARMv8 instruction where present.
/// </summary>
public static class Crc32C
{
    public const uint Seed = 0xFFFF_FFFF;

    /// <summary>Folds <paramref name="data"/> into a running (non-finalised) CRC state.</summary>
    public static uint Append(uint state, ReadOnlySpan<byte> data)
    {
        while (data.Length >= 8)
        {
            state = BitOperations.Crc32C(state, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[8..];
        }
        foreach (byte b in data) state = BitOperations.Crc32C(state, b);
        return state;
    }

    public static uint Finish(uint state) => ~state;

    public static uint Compute(ReadOnlySpan<byte> data) => Finish(Append(Seed, data));
}
