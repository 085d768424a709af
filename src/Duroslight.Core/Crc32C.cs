using System.Buffers.Binary;
using System.IO.Hashing;
using System.Numerics;

namespace Duroslight.Core;

/// <summary>
/// CRC32C (Castagnoli) as NVMe/TCP header and data digests use it: seed ~0, final xor ~0, stored little-endian.
/// Short inputs (PDU headers) go through <see cref="BitOperations.Crc32C(uint, ulong)"/>, 8 bytes per SSE4.2/ARMv8
/// instruction; from <see cref="FoldingMinimum"/> bytes on, System.IO.Hashing's folding implementation, 1.5x
/// faster on 4 KiB and 128 KiB (bench/README.md, "CRC32C").
/// </summary>
public static class Crc32C
{
    /// <summary>The input length from which System.IO.Hashing wins (measured: equal at 512 bytes, 1.2x at 1 KiB, 1.5x from 4 KiB).</summary>
    public const int FoldingMinimum = 1024;

    public static uint Compute(ReadOnlySpan<byte> data) =>
        data.Length >= FoldingMinimum ? System.IO.Hashing.Crc32.HashToUInt32(Crc32ParameterSet.Crc32C, data) : ComputeByInstruction(data);

    /// <summary>The instruction loop alone, at any length (what <see cref="Compute"/> uses below <see cref="FoldingMinimum"/>; the benchmark's baseline).</summary>
    public static uint ComputeByInstruction(ReadOnlySpan<byte> data)
    {
        uint state = 0xFFFF_FFFF;
        while (data.Length >= 8)
        {
            state = BitOperations.Crc32C(state, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[8..];
        }
        foreach (byte b in data) state = BitOperations.Crc32C(state, b);
        return ~state;
    }

    /// <summary>A running CRC32C for data that arrives in pieces (one per connection; Reset per PDU, no allocation).</summary>
    public static System.IO.Hashing.Crc32 CreateRunning() => new(Crc32ParameterSet.Crc32C);
}
