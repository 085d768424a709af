using System.Diagnostics;

namespace Duroslight.Tests.Shared;

/// <summary>
/// Poll-until for conditions that other threads or processes bring about (a controller torn down, a metric
/// scraped). The bound is wall-clock and generous, so a loaded 2-core machine delays a test but cannot fail it;
/// a condition that never comes true still fails, naming what was awaited.
/// </summary>
public static class Eventually
{
    public static readonly TimeSpan DefaultLimit = TimeSpan.FromSeconds(30);

    public static Task Until(Func<bool> condition, string what, TimeSpan? limit = null) =>
        Until(() => Task.FromResult(condition()), what, limit);

    public static async Task Until(Func<Task<bool>> condition, string what, TimeSpan? limit = null)
    {
        TimeSpan bound = limit ?? DefaultLimit;
        var clock = Stopwatch.StartNew();
        while (!await condition().ConfigureAwait(false))
        {
            if (clock.Elapsed > bound) throw new Xunit.Sdk.XunitException($"not true within {bound.TotalSeconds:0} s: {what}");
            await Task.Delay(20).ConfigureAwait(false);
        }
    }
}
