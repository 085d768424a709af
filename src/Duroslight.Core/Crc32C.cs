using System.Buffers.Binary;
using System.IO.Hashing;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Duroslight.Core;

/// <summary>
/// CRC32C (Castagnoli) as NVMe/TCP header and data digests use it: seed ~0, final xor ~0, stored little-endian.
/// Short inputs (PDU headers) go through <see cref="BitOperations.Crc32C(uint, ulong)"/>, 8 bytes per SSE4.2/ARMv8
/// instruction; from <see cref="FoldingMinimum"/> bytes on, System.IO.Hashing's folding implementation, 1.5x
/// faster on 4 KiB and 128 KiB; from <see cref="InterleavedMinimum"/> bytes on (a 4 KiB block, the GFTL's and the
/// data digests' usual length), three interleaved instruction streams, about twice the folding's speed
/// (bench/README.md, "CRC32C").
/// </summary>
public static class Crc32C
{
    /// <summary>The input length from which System.IO.Hashing wins (measured: equal at 512 bytes, 1.2x at 1 KiB, 1.5x from 4 KiB).</summary>
    public const int FoldingMinimum = 1024;

    /// <summary>Bytes of each of the three streams of <see cref="ComputeInterleaved"/> (a multiple of 8).</summary>
    private const int StreamBytes = 1360;

    /// <summary>The input length from which three streams are used: one pass covers 4080 bytes.</summary>
    public const int InterleavedMinimum = 3 * StreamBytes;

    // Advancing a CRC state over StreamBytes (and twice that) zero bytes is linear in the state: four 256-entry
    // tables, one per state byte, do it in four lookups.
    private static readonly uint[] s_overOne = ZeroAdvanceTable(StreamBytes), s_overTwo = ZeroAdvanceTable(2 * StreamBytes);

    public static uint Compute(ReadOnlySpan<byte> data) =>
        data.Length >= InterleavedMinimum ? ComputeInterleaved(data)
        : data.Length >= FoldingMinimum ? System.IO.Hashing.Crc32.HashToUInt32(Crc32ParameterSet.Crc32C, data)
        : ComputeByInstruction(data);

    /// <summary>The instruction loop alone, at any length (what <see cref="Compute"/> uses below <see cref="FoldingMinimum"/>; the benchmark's baseline).</summary>
    public static uint ComputeByInstruction(ReadOnlySpan<byte> data) => ~Update(0xFFFF_FFFF, data);

    /// <summary>
    /// Three streams at any length (what <see cref="Compute"/> uses from <see cref="InterleavedMinimum"/>). The
    /// instruction takes 3 cycles but can start every cycle, so one dependent chain uses a third of it: each block of
    /// 3 x 1360 bytes runs as three chains, A from the state, B and C from 0, then state = A advanced over 2720 zero
    /// bytes ^ B advanced over 1360 ^ C (the CRC register is linear: crc(s, X) = crc(s, zeros) ^ crc(0, X)).
    /// </summary>
    public static uint ComputeInterleaved(ReadOnlySpan<byte> data)
    {
        uint state = 0xFFFF_FFFF;
        ref byte start = ref MemoryMarshal.GetReference(data);
        int at = 0;
        for (; data.Length - at >= InterleavedMinimum; at += InterleavedMinimum)
        {
            ref byte block = ref Unsafe.Add(ref start, at);
            uint a = state, b = 0, c = 0;
            for (int i = 0; i < StreamBytes; i += 8)
            {
                a = BitOperations.Crc32C(a, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref block, i)));
                b = BitOperations.Crc32C(b, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref block, StreamBytes + i)));
                c = BitOperations.Crc32C(c, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref block, (2 * StreamBytes) + i)));
            }

            state = AdvanceOverZeros(s_overTwo, a) ^ AdvanceOverZeros(s_overOne, b) ^ c;
        }

        return ~Update(state, data[at..]);
    }

    /// <summary>A running CRC32C for data that arrives in pieces (one per connection; Reset per PDU, no allocation).</summary>
    public static System.IO.Hashing.Crc32 CreateRunning() => new(Crc32ParameterSet.Crc32C);

    /// <summary>The CRC register (no seed or final xor) after <paramref name="data"/>, from <paramref name="state"/>.</summary>
    private static uint Update(uint state, ReadOnlySpan<byte> data)
    {
        while (data.Length >= 8)
        {
            state = BitOperations.Crc32C(state, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[8..];
        }

        foreach (byte b in data) state = BitOperations.Crc32C(state, b);
        return state;
    }

    private static uint AdvanceOverZeros(uint[] table, uint state) =>
        table[state & 0xFF] ^ table[256 | ((state >> 8) & 0xFF)] ^ table[512 | ((state >> 16) & 0xFF)] ^ table[768 | (state >> 24)];

    private static uint[] ZeroAdvanceTable(int zeros)
    {
        var table = new uint[1024];
        for (int i = 0; i < table.Length; i++)
        {
            uint state = (uint)(i & 0xFF) << (8 * (i >> 8));
            for (int n = 0; n < zeros; n += 8) state = BitOperations.Crc32C(state, 0UL);
            table[i] = state;
        }

        return table;
    }
}
