using Duroslight.Storage.Chunking;
using FsCheck;
using FsCheck.Fluent;
using Duroslight.Tests.Shared;
using FsCheck.Xunit;

namespace Duroslight.Storage.Tests.Chunking;

public sealed class ChunkMapTests
{
    private const int ChunkSize = ChunkMap.ChunkSize;

    /// <summary>Offsets on, just off, and far from chunk boundaries.</summary>
    private static readonly Gen<long> Offsets = Gen.OneOf(
        Gen.Choose(0, 1 << 24).Select(chunk => (long)chunk * ChunkSize),
        Gen.Choose(0, 1 << 24).Zip(Gen.Choose(0, ChunkSize - 1), (chunk, inside) => ((long)chunk * ChunkSize) + inside),
        Gen.Choose(0, 4 * ChunkSize).Select(offset => (long)offset));

    private static readonly Gen<long> Lengths = Gen.OneOf(
        Gen.Choose(0, 3 * ChunkSize).Select(length => (long)length),
        Gen.Choose(0, 64).Select(chunks => (long)chunks * ChunkSize),
        Gen.Choose(0, 64 * ChunkSize).Select(length => (long)length));

    private static readonly Gen<Guid> Guids = Gen.ArrayOf(Gen.Choose(0, 255).Select(b => (byte)b), 16).Select(bytes => new Guid(bytes));

    [Property(MaxTest = 2000)]
    public Property Split_covers_every_byte_once_and_cuts_only_at_chunk_boundaries()
    {
        return Prop.ForAll(Arb.From(Offsets.Zip(Lengths)), range => IsExactChunkCover(range.Item1, range.Item2, blockShift: 0));
    }

    /// <summary>The same helper in block units (GFTL's trims count 4 KiB blocks): ranges in blocks, pieces in blocks.</summary>
    [Property(MaxTest = 2000)]
    public Property SplitBlocks_covers_every_block_once_and_cuts_only_at_chunk_boundaries()
    {
        Gen<(long, long, int)> inputs =
            from shift in Gen.Elements(9, 12, 17)
            from offset in Offsets
            from length in Lengths
            select (offset >> shift, length >> shift, shift);
        return Prop.ForAll(Arb.From(inputs), input => IsExactChunkCover(input.Item1, input.Item2, input.Item3));
    }

    [Theory]
    [InlineData(0, 0, 0)]
    [InlineData(0, 1, 1)]
    [InlineData(0, ChunkSize, 1)]
    [InlineData(ChunkSize - 1, 2, 2)]
    [InlineData(4096, ChunkSize, 2)]
    [InlineData(ChunkSize, 3 * ChunkSize, 3)]
    [InlineData(long.MaxValue - 10, 10, 1)] // the last chunk of the address space: no overflow
    public void Split_examples(long offset, long length, long pieces)
    {
        Assert.Equal(pieces, ChunkMap.Split(offset, length).Count);
        Assert.True(IsExactChunkCover(offset, length, blockShift: 0));
    }

    [Fact]
    public void Split_gives_chunk_indexes_and_offsets_inside_chunks()
    {
        var pieces = new List<ChunkSpan>();
        foreach (ChunkSpan span in ChunkMap.Split(ChunkSize - 4096, ChunkSize + 8192))
        {
            pieces.Add(span);
        }

        Assert.Equal(
            [new ChunkSpan(0, ChunkSize - 4096, 4096, ChunkSize - 4096), new ChunkSpan(1, ChunkSize, ChunkSize, 0), new ChunkSpan(2, 2 * ChunkSize, 4096, 0)],
            pieces);
    }

    [Fact]
    public void SplitBlocks_counts_in_blocks()
    {
        var pieces = new List<ChunkSpan>();
        foreach (ChunkSpan span in ChunkMap.SplitBlocks(30, 40, blockShift: 12))
        {
            pieces.Add(span);
        }

        // 32 blocks of 4 KiB per chunk: blocks 30-31, 32-63, 64-69.
        Assert.Equal([new ChunkSpan(0, 30, 2, 30), new ChunkSpan(1, 32, 32, 0), new ChunkSpan(2, 64, 6, 0)], pieces);
        Assert.Throws<ArgumentOutOfRangeException>(() => ChunkMap.SplitBlocks(0, 1, blockShift: 18));
    }

    [Fact]
    public void Split_rejects_negative_and_overflowing_ranges()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => ChunkMap.Split(-1, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => ChunkMap.Split(0, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => ChunkMap.Split(long.MaxValue - 10, 11));
    }

    [Fact]
    public void Split_and_owner_lookup_allocate_nothing()
    {
        var volume = Guid.NewGuid();
        long checksum = 0;

        // Each pass splits a range into 41 chunks and looks up each owner.
        AllocationProbe.AssertNoAllocationPerOp(() =>
        {
            for (int i = 0; i < 250; i++) checksum += SplitAndOwn(volume);
        }, opsPerRound: 250 * 41, what: "split and owner lookup");

        Assert.NotEqual(0, checksum);
    }

    /// <summary>Vectors from the reference C++ implementation (as used by dgryski/go-jump's tests).</summary>
    [Theory]
    [InlineData(0UL, new[] { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 })]
    [InlineData(1UL, new[] { 0, 0, 0, 0, 0, 0, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 17, 17 })]
    [InlineData(0xdeadbeefUL, new[] { 0, 1, 2, 3, 3, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 16, 16, 16 })]
    [InlineData(0x0ddc0ffeebadf00dUL, new[] { 0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 15, 15, 15, 15 })]
    public void Jump_hash_matches_the_reference_implementation(ulong key, int[] bucketForCount)
    {
        for (int i = 0; i < bucketForCount.Length; i++)
        {
            Assert.Equal(bucketForCount[i], ChunkMap.JumpConsistentHash(key, i + 1));
        }
    }

    /// <summary>
    /// Pinned outputs: owners must agree across nodes, processes and .NET versions, so any change to the
    /// key derivation or the hash fails here (and would move data between shards). The values were
    /// cross-checked with an independent Python implementation (uuid.UUID(...).bytes, SplitMix64, jump hash).
    /// </summary>
    [Theory]
    [InlineData("6f9619ff-8b86-d011-b42d-00c04fc964ff", 0, 0xe6baf9957dab2fe1UL, 16, 4)]
    [InlineData("6f9619ff-8b86-d011-b42d-00c04fc964ff", 1, 0x61baaa78692c446eUL, 16, 4)]
    [InlineData("6f9619ff-8b86-d011-b42d-00c04fc964ff", 2, 0xc51fbd3e617e1729UL, 16, 0)]
    [InlineData("00000000-0000-0000-0000-000000000001", 12345, 0x5ee45884c609ac45UL, 7, 6)]
    [InlineData("ffffffff-ffff-ffff-ffff-ffffffffffff", 1L << 40, 0xd4894998ee968684UL, 1000, 280)]
    public void Keys_and_owners_are_pinned(string volume, long chunk, ulong key, int shards, int owner)
    {
        Assert.Equal(key, ChunkMap.ChunkKey(Guid.Parse(volume), chunk));
        Assert.Equal(owner, ChunkMap.OwnerShard(Guid.Parse(volume), chunk, shards));
    }

    [Property(MaxTest = 2000)]
    public Property Owner_is_deterministic_and_in_range()
    {
        Gen<(Guid, long, int)> inputs =
            from volume in Guids
            from chunk in Gen.Choose(0, int.MaxValue)
            from shards in Gen.Choose(1, 1024)
            select (volume, (long)chunk, shards);

        return Prop.ForAll(Arb.From(inputs), input =>
        {
            var (volume, chunk, shards) = input;
            int owner = ChunkMap.OwnerShard(volume, chunk, shards);
            return owner >= 0 && owner < shards && owner == ChunkMap.OwnerShard(new Guid(volume.ToString()), chunk, shards);
        });
    }

    [Fact]
    public void Owners_are_balanced_within_ten_percent()
    {
        (Guid Volume, long Chunk)[] chunks = RandomChunks(100_000, seed: 42);
        for (int shards = 1; shards <= 16; shards++)
        {
            var counts = new int[shards];
            foreach (var (volume, chunk) in chunks)
            {
                counts[ChunkMap.OwnerShard(volume, chunk, shards)]++;
            }

            double mean = (double)chunks.Length / shards;
            Assert.All(counts, count => Assert.InRange(count, mean * 0.9, mean * 1.1));
        }
    }

    [Fact]
    public void Adding_a_shard_moves_about_one_in_n_plus_one_chunks_and_only_to_the_new_shard()
    {
        (Guid Volume, long Chunk)[] chunks = RandomChunks(100_000, seed: 7);
        for (int shards = 1; shards <= 16; shards++)
        {
            int moved = 0;
            foreach (var (volume, chunk) in chunks)
            {
                int before = ChunkMap.OwnerShard(volume, chunk, shards);
                int after = ChunkMap.OwnerShard(volume, chunk, shards + 1);
                if (before != after)
                {
                    Assert.Equal(shards, after);
                    moved++;
                }
            }

            double expected = (double)chunks.Length / (shards + 1);
            Assert.InRange(moved, expected * 0.9, expected * 1.1);
        }
    }

    [Fact]
    public void Owner_rejects_bad_arguments()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => ChunkMap.OwnerShard(Guid.NewGuid(), 0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => ChunkMap.OwnerShard(Guid.NewGuid(), -1, 4));
    }

    /// <summary>In order, no gap, no overlap, never across a chunk boundary, and Count agrees; units of 2^blockShift bytes.</summary>
    private static bool IsExactChunkCover(long offset, long length, int blockShift)
    {
        long unitsPerChunk = ChunkSize >> blockShift;
        long next = offset;
        long pieces = 0;
        long previousChunk = -1;
        ChunkSpans split = blockShift == 0 ? ChunkMap.Split(offset, length) : ChunkMap.SplitBlocks(offset, length, blockShift);
        foreach (ChunkSpan span in split)
        {
            bool inOneChunk = span.ChunkIndex == span.Offset / unitsPerChunk &&
                              (span.Offset + span.Length - 1) / unitsPerChunk == span.ChunkIndex &&
                              span.OffsetInChunk == span.Offset % unitsPerChunk;
            bool cutOnlyAtBoundaries = previousChunk < 0 || span.ChunkIndex == previousChunk + 1;
            if (span.Offset != next || span.Length <= 0 || !inOneChunk || !cutOnlyAtBoundaries)
            {
                return false;
            }

            next += span.Length;
            previousChunk = span.ChunkIndex;
            pieces++;
        }

        return next == offset + length && pieces == split.Count;
    }

    private static long SplitAndOwn(Guid volume)
    {
        long sum = 0;
        foreach (ChunkSpan span in ChunkMap.Split(ChunkSize - 512, 40L * ChunkSize))
        {
            sum += span.Length + ChunkMap.OwnerShard(volume, span.ChunkIndex, 8);
        }

        return sum;
    }

    private static (Guid, long)[] RandomChunks(int count, int seed)
    {
        var random = new Random(seed);
        var chunks = new (Guid, long)[count];
        Span<byte> bytes = stackalloc byte[16];
        for (int i = 0; i < count; i += 1000)
        {
            random.NextBytes(bytes);
            var volume = new Guid(bytes);
            for (int j = 0; j < 1000 && i + j < count; j++)
            {
                chunks[i + j] = (volume, j); // 100 volumes, their first 1000 chunks each
            }
        }

        return chunks;
    }
}
