using Duroslight.Tests.Shared;

namespace Duroslight.Storage.Tests;

/// <summary>The shared allocation probe must fail on the smallest per-call allocation, or its passes mean nothing.</summary>
public sealed class AllocationProbeTests
{
    private static object? _sink;

    [Fact]
    public void One_small_object_per_operation_fails_with_the_measured_figures()
    {
        var failure = Assert.ThrowsAny<Exception>(() => AllocationProbe.AssertNoAllocationPerOp(() =>
        {
            for (int i = 0; i < 1000; i++) _sink = new object();
        }, opsPerRound: 1000, what: "new object()"));
        Assert.Contains("new object() allocated in every one of 8 rounds", failure.Message);
        Assert.Contains("24", failure.Message); // an object header and method table pointer: 24 bytes per call
    }

    [Fact]
    public void An_allocation_free_operation_passes()
    {
        long sum = 0;
        AllocationProbe.AssertNoAllocationPerOp(() =>
        {
            for (int i = 0; i < 1000; i++) sum += i;
        }, opsPerRound: 1000);
        Assert.NotEqual(0, sum);
    }
}
