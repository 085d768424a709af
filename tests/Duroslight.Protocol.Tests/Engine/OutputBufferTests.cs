using Duroslight.Protocol.Engine;
using Duroslight.Tests.Shared;
using Xunit;

namespace Duroslight.Protocol.Tests.Engine;

/// <summary>The output buffer lends bytes to an asynchronous send while the engine keeps appending.</summary>
public sealed class OutputBufferTests
{
    [Fact]
    public void Lent_bytes_stay_put_and_the_stream_keeps_its_order_under_random_appends_and_partial_sends()
    {
        for (int seed = 0; seed < 200; seed++)
        {
            var rng = new Random(seed);
            using var output = new OutputBuffer(initialSize: 1024);
            var written = new List<byte>();
            var sent = new List<byte>();
            ReadOnlyMemory<byte> lent = default;
            byte[]? lentCopy = null;
            byte next = 0;
            for (int step = 0; step < 400; step++)
            {
                int choice = rng.Next(3);
                if (choice == 0 || lentCopy is null && choice == 2)
                {
                    int n = rng.Next(1, 900);
                    var span = output.GetSpan(n);
                    for (int i = 0; i < n; i++) written.Add(span[i] = next++);
                    output.Advance(n);
                }
                else if (choice == 1 && lentCopy is null && output.Length > 0)
                {
                    lent = output.BeginSend();
                    lentCopy = lent.ToArray();
                }
                else if (lentCopy is not null)
                {
                    // The kernel reads the lent bytes only now: they must not have changed meanwhile.
                    Assert.Equal(lentCopy, lent.ToArray());
                    int took = rng.Next(0, lentCopy.Length + 1);
                    sent.AddRange(lentCopy.AsSpan(0, took).ToArray());
                    output.EndSend(took);
                    lentCopy = null;
                }
            }
            if (lentCopy is not null) output.EndSend(0);
            sent.AddRange(output.Pending.ToArray());
            Assert.Equal(written, sent);
        }
    }

    [Fact]
    public void A_steady_stream_with_a_send_always_in_flight_stops_allocating()
    {
        using var output = new OutputBuffer(initialSize: 4096);
        var chunk = new byte[4200];
        AllocationProbe.AssertNoAllocationPerOp(() => Cycles(output, chunk, 10_000), opsPerRound: 10_000, what: "a send cycle");
    }

    private static void Cycles(OutputBuffer output, byte[] chunk, int count)
    {
        for (int i = 0; i < count; i++) Cycle(output, chunk);
    }

    /// <summary>A send is in flight while the next responses are appended; it completes having taken everything it was lent.</summary>
    private static void Cycle(OutputBuffer output, byte[] chunk)
    {
        var lent = output.BeginSend();
        output.Write(chunk);
        output.Write(chunk);
        output.EndSend(lent.Length);
    }
}
