using Duroslight.Protocol.Wire;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Xunit;
using Duroslight.Core;

namespace Duroslight.Protocol.Tests.Wire;

/// <summary>The CRC32C paths (instruction loop, System.IO.Hashing folding, three interleaved streams) and the running form against a bitwise model.</summary>
public sealed class Crc32CTests
{
    [Fact]
    public void Check_value_of_the_castagnoli_crc()
    {
        Assert.Equal(0xE3069283u, Crc32C.Compute("123456789"u8));
        Assert.Equal(0u, Crc32C.Compute([]));
    }

    [Fact]
    public void Every_length_around_the_switch_matches_the_bitwise_model()
    {
        var data = new byte[128 * 1024 + 3];
        new Random(7).NextBytes(data);
        for (int length = 0; length <= 2 * Crc32C.FoldingMinimum + 9; length++)
            Assert.Equal(Bitwise(data.AsSpan(1, length)), Crc32C.Compute(data.AsSpan(1, length)));
        Assert.Equal(Bitwise(data), Crc32C.Compute(data));
    }

    [Fact]
    public void The_interleaved_streams_match_the_bitwise_model_around_each_block()
    {
        var data = new byte[3 * Crc32C.InterleavedMinimum + 16];
        new Random(11).NextBytes(data);
        foreach (int blocks in new[] { 0, 1, 2, 3 })
        {
            for (int length = Math.Max(0, (blocks * Crc32C.InterleavedMinimum) - 9); length <= Math.Min(data.Length - 3, (blocks * Crc32C.InterleavedMinimum) + 9); length++)
            {
                uint expected = Bitwise(data.AsSpan(3, length));
                Assert.Equal(expected, Crc32C.ComputeInterleaved(data.AsSpan(3, length)));
                Assert.Equal(expected, Crc32C.Compute(data.AsSpan(3, length)));
            }
        }

        Assert.Equal(Bitwise(data.AsSpan(0, 4096)), Crc32C.Compute(data.AsSpan(0, 4096)));
    }

    [Property(MaxTest = 200)]
    public Property Running_crc_over_any_split_equals_the_whole() =>
        Prop.ForAll(Arb.From(Gen.ArrayOf(Gen.Choose(0, 255).Select(b => (byte)b))), Arb.From(Gen.ArrayOf(Gen.Choose(0, 700))), (bytes, cuts) =>
        {
            var running = Crc32C.CreateRunning();
            running.Append([1, 2, 3]);
            running.Reset();
            int at = 0;
            foreach (int cut in cuts)
            {
                int take = Math.Min(cut, bytes.Length - at);
                running.Append(bytes.AsSpan(at, take));
                at += take;
            }
            running.Append(bytes.AsSpan(at));
            return running.GetCurrentHashAsUInt32() == Crc32C.Compute(bytes) && Crc32C.Compute(bytes) == Bitwise(bytes);
        });

    private static uint Bitwise(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFF_FFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int i = 0; i < 8; i++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78u : crc >> 1;
        }
        return ~crc;
    }
}
