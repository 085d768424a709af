using System.Diagnostics;
using Hashing = System.IO.Hashing;
using Duroslight.Core;

namespace Duroslight.Bench;

/// <summary>
/// `crc`: the CRC32C comparison behind Crc32C.FoldingMinimum and InterleavedMinimum, made for a loaded machine:
/// thousands of alternating samples of the instruction loop, System.IO.Hashing and Crc32C.Compute (three interleaved
/// streams from 4080 bytes), keeping each one's minimum (noise only adds time).
/// </summary>
public static class Crc32CSamples
{
    public static int Run()
    {
        foreach (int size in new[] { 24, 72, 128, 256, 512, 1024, 4096, 8192, 128 * 1024 })
        {
            var data = new byte[size];
            new Random(1).NextBytes(data);
            if (Loop(data) != Library(data) || Crc32C.Compute(data) != Library(data)) throw new InvalidOperationException("the two CRC32C implementations disagree");
            int calls = Math.Max(1, 800_000 / size);
            double loop = double.MaxValue, library = double.MaxValue, compute = double.MaxValue;
            uint sink = 0;
            for (int sample = 0; sample < 3000; sample++)
            {
                long t0 = Stopwatch.GetTimestamp();
                for (int i = 0; i < calls; i++) sink ^= Loop(data);
                long t1 = Stopwatch.GetTimestamp();
                for (int i = 0; i < calls; i++) sink ^= Library(data);
                long t2 = Stopwatch.GetTimestamp();
                for (int i = 0; i < calls; i++) sink ^= Crc32C.Compute(data);
                long t3 = Stopwatch.GetTimestamp();
                loop = Math.Min(loop, (t1 - t0) * 1e9 / Stopwatch.Frequency / calls);
                library = Math.Min(library, (t2 - t1) * 1e9 / Stopwatch.Frequency / calls);
                compute = Math.Min(compute, (t3 - t2) * 1e9 / Stopwatch.Frequency / calls);
            }
            Console.WriteLine($"{size,7} B: loop {loop,9:F1} ns  System.IO.Hashing {library,9:F1} ns  Crc32C.Compute {compute,9:F1} ns  loop/library {loop / library:F2}  library/Compute {library / compute:F2}{(sink == 42 ? " " : "")}");
        }
        return 0;
    }

    /// <summary>The loop over the SSE4.2/ARMv8 instruction that Crc32C used for every length before.</summary>
    private static uint Loop(ReadOnlySpan<byte> data) => Crc32C.ComputeByInstruction(data);

    private static uint Library(ReadOnlySpan<byte> data) => Hashing.Crc32.HashToUInt32(Hashing.Crc32ParameterSet.Crc32C, data);
}
