using System.Globalization;
using System.Runtime.CompilerServices;

namespace Duroslight.Tests.Shared;

/// <summary>
/// Asserts that an operation does not allocate per call, in a way a loaded machine cannot make flaky.
/// <see cref="GC.GetAllocatedBytesForCurrentThread"/> also counts what the runtime allocates on the thread
/// (tiered recompilation, call counting, OSR transitions, the test host), in bursts at moments that depend on
/// timing. A real per-call allocation shows in every round, at least one object (24 bytes) per call; runtime
/// noise shows in a few rounds. So the probe runs several long rounds after a warm-up and passes when the
/// quietest round stays under <see cref="MaxBytesPerOp"/>, far below one object per call.
/// </summary>
public static class AllocationProbe
{
    /// <summary>Well under the 24 bytes of the smallest object: a per-call allocation cannot pass.</summary>
    public const double MaxBytesPerOp = 1.0;

    /// <summary>Runs <paramref name="round"/> (which performs <paramref name="opsPerRound"/> operations) after a
    /// warm-up, up to <paramref name="rounds"/> times, and fails with every round's figure if none was quiet.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void AssertNoAllocationPerOp(Action round, int opsPerRound, int rounds = 8, int warmUpRounds = 2, string what = "the operation")
    {
        for (int i = 0; i < warmUpRounds; i++) round();
        var perOp = new double[rounds];
        for (int i = 0; i < rounds; i++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            round();
            perOp[i] = (double)(GC.GetAllocatedBytesForCurrentThread() - before) / opsPerRound;
            if (perOp[i] < MaxBytesPerOp) return;
        }
        throw new Xunit.Sdk.XunitException(string.Create(CultureInfo.InvariantCulture,
            $"{what} allocated in every one of {rounds} rounds of {opsPerRound} operations; bytes per operation by round: {string.Join(", ", perOp.Select(b => b.ToString("0.###", CultureInfo.InvariantCulture)))} (bound {MaxBytesPerOp})"));
    }
}
