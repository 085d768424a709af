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
    public void Gathered_sends_keep_the_stream_order_and_return_in_place_buffers_once_sent_past()
    {
        for (int seed = 0; seed < 200; seed++)
        {
            var rng = new Random(seed);
            var owner = new ReturnLog();
            using var output = new OutputBuffer(initialSize: 512, dataOwner: owner);
            var written = new List<byte>();
            var sent = new List<byte>();
            var inPlaceEnds = new Queue<(long End, byte[] Buffer)>(); // stream position after each in-place buffer
            var segments = new ReadOnlyMemory<byte>[8];
            int returned = 0, appended = 0;
            byte next = 0;
            for (int step = 0; step < 300; step++)
            {
                int choice = rng.Next(4);
                if (choice == 0)
                {
                    int n = rng.Next(1, 300);
                    var span = output.GetSpan(n);
                    for (int i = 0; i < n; i++) written.Add(span[i] = next++);
                    output.Advance(n);
                }
                else if (choice == 1)
                {
                    int n = rng.Next(1, 700);
                    var buffer = new byte[n + rng.Next(0, 50)]; // rented buffers may be longer than the data
                    for (int i = 0; i < n; i++) written.Add(buffer[i] = next++);
                    output.AppendInPlace(buffer, n);
                    inPlaceEnds.Enqueue((written.Count, buffer));
                    appended++;
                }
                else if (!output.IsEmpty)
                {
                    int count = output.BeginSend(segments.AsSpan(0, rng.Next(1, segments.Length + 1)));
                    var lent = new List<byte>();
                    for (int i = 0; i < count; i++) lent.AddRange(segments[i].ToArray());
                    // More appends while the send is in flight must not disturb the lent bytes.
                    var more = output.GetSpan(64);
                    for (int i = 0; i < 64; i++) written.Add(more[i] = next++);
                    output.Advance(64);
                    var again = new List<byte>();
                    for (int i = 0; i < count; i++) again.AddRange(segments[i].ToArray());
                    Assert.Equal(lent, again);
                    int took = rng.Next(0, lent.Count + 1);
                    sent.AddRange(lent.GetRange(0, took));
                    output.EndSend(took);
                    // Exactly the buffers the stream was sent past went back, in order.
                    while (inPlaceEnds.TryPeek(out var e) && e.End <= sent.Count)
                    {
                        Assert.Same(inPlaceEnds.Dequeue().Buffer, owner.Returned.Dequeue().Item1);
                        returned++;
                    }
                    Assert.Empty(owner.Returned);
                    Assert.Equal(written.Count - sent.Count, output.PendingBytes);
                }
            }
            while (!output.IsEmpty)
            {
                int count = output.BeginSend(segments);
                int took = 0;
                for (int i = 0; i < count; i++)
                {
                    sent.AddRange(segments[i].ToArray());
                    took += segments[i].Length;
                }
                output.EndSend(took);
            }
            Assert.Equal(written, sent);
            Assert.Equal(appended, returned + owner.Returned.Count);
        }
    }

    [Fact]
    public void Dispose_returns_unsent_in_place_buffers()
    {
        var owner = new ReturnLog();
        var output = new OutputBuffer(dataOwner: owner);
        output.Write([1, 2, 3]);
        output.AppendInPlace(new byte[10], 10);
        output.AppendInPlace(new byte[10], 4);
        output.Dispose();
        Assert.Equal(2, owner.Returned.Count);
    }

    /// <summary>Records what the output gave back, in order.</summary>
    private sealed class ReturnLog : IDataBufferPool
    {
        public Queue<ValueTuple<byte[]>> Returned { get; } = new();

        public Memory<byte> Rent(int length) => new byte[length];

        public void Return(Memory<byte> buffer)
        {
            Assert.True(System.Runtime.InteropServices.MemoryMarshal.TryGetArray<byte>(buffer, out var segment));
            Returned.Enqueue(new ValueTuple<byte[]>(segment.Array!));
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
