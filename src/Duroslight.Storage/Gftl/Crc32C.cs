using System.Buffers.Binary;
using System.Numerics;

namespace Duroslight.Storage.Gftl;

/// <summary>CRC32C (Castagnoli, seed and final xor ~0) for on-disk records; the CPU instruction does the work.</summary>
internal static class Crc32C
{
    public static uint Compute(ReadOnlySpan<byte> data)
    {
        uint state = 0xFFFF_FFFF;
        int i = 0;
        for (; i + 8 <= data.Length; i += 8)
        {
            state = BitOperations.Crc32C(state, BinaryPrimitives.ReadUInt64LittleEndian(data[i..]));
        }

        for (; i < data.Length; i++)
        {
            state = BitOperations.Crc32C(state, data[i]);
        }

        return ~state;
    }
}
