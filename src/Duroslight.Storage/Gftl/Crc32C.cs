using System.Buffers.Binary;
using System.IO.Hashing;
using System.Numerics;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// CRC32C (Castagnoli, seed and final xor ~0) for on-disk records. Same split as the digests' Protocol.Wire.Crc32C
/// (the shared bottom project will hold one copy): the 8-byte instruction loop for short inputs, System.IO.Hashing's
/// folding from 1 KiB on, 1.5x faster on blocks (bench/README.md, "CRC32C").
/// </summary>
internal static class Crc32C
{
    private const int FoldingMinimum = 1024;

    public static uint Compute(ReadOnlySpan<byte> data)
    {
        if (data.Length >= FoldingMinimum) return System.IO.Hashing.Crc32.HashToUInt32(Crc32ParameterSet.Crc32C, data);
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
