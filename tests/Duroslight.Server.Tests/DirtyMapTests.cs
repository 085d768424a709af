using Duroslight.Server.Replication;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Xunit;

namespace Duroslight.Server.Tests;

/// <summary>The dirty-chunk map and its sync-point codec as properties over random maps and bounds.</summary>
public sealed class DirtyMapTests
{
    /// <summary>A map of 0..3000 chunks with random runs (long runs and single chunks alike).</summary>
    private static readonly Gen<(long Chunks, long[] Set)> Maps =
        from chunks in Gen.Choose(0, 3000)
        from runs in Gen.ListOf(from start in Gen.Choose(0, Math.Max(0, chunks - 1))
                                from length in Gen.Frequency((3, Gen.Choose(1, 3)), (1, Gen.Choose(1, 300)))
                                select (start, length))
        select ((long)chunks, chunks == 0 ? [] : runs.SelectMany(r => Enumerable.Range(r.start, Math.Min(r.length, chunks - r.start)).Select(c => (long)c)).ToArray());

    private static DirtyMap Build(long chunks, IEnumerable<long> set)
    {
        var map = new DirtyMap(chunks);
        foreach (long c in set) map.Set(c);
        return map;
    }

    private static long[] Bits(DirtyMap map)
    {
        var bits = new List<long>();
        for (long c = map.NextSet(0); c >= 0; c = map.NextSet(c + 1)) bits.Add(c);
        return [.. bits];
    }

    private static DirtyMap RoundTrip(DirtyMap map, int maxBytes)
    {
        var back = new DirtyMap(map.Chunks);
        Assert.True(DirtyMapCodec.TryDecodeInto(DirtyMapCodec.Encode(map, maxBytes), back));
        return back;
    }

    [Property(MaxTest = 300)]
    public Property Exact_round_trip_under_a_large_bound() => Prop.ForAll(Arb.From(Maps), m =>
    {
        var map = Build(m.Chunks, m.Set);
        Assert.Equal(m.Set.Distinct().Order().ToArray(), Bits(map));
        Assert.Equal(Bits(map), Bits(RoundTrip(map, 1 << 20)));
        Assert.Equal(m.Set.Distinct().Count(), map.Count());
    });

    /// <summary>Any bound: the encoding fits it and decodes to a superset (coarsening never loses a dirty chunk).</summary>
    [Property(MaxTest = 300)]
    public Property Bounded_encoding_fits_and_covers_every_dirty_chunk() => Prop.ForAll(Arb.From(Maps), Arb.From(Gen.Choose(16, 120)), (m, maxBytes) =>
    {
        var map = Build(m.Chunks, m.Set);
        byte[] encoded = DirtyMapCodec.Encode(map, maxBytes);
        Assert.InRange(encoded.Length, 2, maxBytes);
        var back = RoundTrip(map, maxBytes);
        foreach (long c in Bits(map)) Assert.True(back.IsSet(c), $"chunk {c} lost at bound {maxBytes}");
    });

    /// <summary>Decoding two sync points into one map is their union (a new primary merging what it loads with what it records).</summary>
    [Property(MaxTest = 200)]
    public Property Decoding_merges_as_a_union() => Prop.ForAll(Arb.From(Maps), Arb.From(Gen.ListOf(Gen.Choose(0, 2999))), (m, more) =>
    {
        var a = Build(m.Chunks, m.Set);
        var b = Build(m.Chunks, more.Where(c => c < m.Chunks).Select(c => (long)c));
        var merged = new DirtyMap(m.Chunks);
        Assert.True(DirtyMapCodec.TryDecodeInto(DirtyMapCodec.Encode(a, 1 << 20), merged));
        Assert.True(DirtyMapCodec.TryDecodeInto(DirtyMapCodec.Encode(b, 1 << 20), merged));
        var union = Build(m.Chunks, m.Set);
        union.UnionWith(b);
        Assert.Equal(Bits(union), Bits(merged));
        Assert.Equal(m.Set.Union(more.Where(c => c < m.Chunks).Select(c => (long)c)).Distinct().Order().ToArray(), Bits(merged));
    });

    /// <summary>Bytes from etcd that are not a map of this size (corrupt, another size) are refused whole, never thrown on.</summary>
    [Property(MaxTest = 500)]
    public Property Garbage_is_refused_without_throwing() => Prop.ForAll(Arb.From(Gen.ArrayOf(Gen.Choose(0, 255).Select(b => (byte)b))), Arb.From(Gen.Choose(0, 500)), (bytes, chunks) =>
    {
        var into = new DirtyMap(chunks);
        if (!DirtyMapCodec.TryDecodeInto(bytes, into)) Assert.Equal(0, into.Count());
    });

    [Fact]
    public void A_map_of_another_size_is_refused()
    {
        var big = Build(1000, [999]);
        Assert.False(DirtyMapCodec.TryDecodeInto(DirtyMapCodec.Encode(big), new DirtyMap(500)));
    }

    [Fact]
    public void Coarsening_keeps_the_value_small_for_the_worst_pattern()
    {
        // Every other chunk of a 1 TiB volume: 4 Mi runs, which exact would take 8 MiB.
        var map = new DirtyMap(8L << 20);
        for (long c = 0; c < map.Chunks; c += 2) map.Set(c);
        byte[] encoded = DirtyMapCodec.Encode(map);
        Assert.InRange(encoded.Length, 2, DirtyMapCodec.DefaultMaxBytes);
        Assert.Equal(map.Chunks, RoundTrip(map, DirtyMapCodec.DefaultMaxBytes).Count());
    }

    [Fact]
    public void Set_reports_only_the_first_touch_and_clear_undoes_it()
    {
        var map = new DirtyMap(200);
        Assert.True(map.SetBytes(128 * 1024 * 3 + 4096, 128 * 1024 * 3 + 8192));
        Assert.False(map.Set(3));
        Assert.Equal([3L], Bits(map));
        map.Clear(3);
        Assert.Equal(0, map.Count());
        map.SetAll();
        Assert.Equal(200, map.Count());
        Assert.Equal(200, map.NextClear(0));
    }
}
