using System.Buffers.Binary;
using Duroslight.Storage.Gftl;
using FsCheck;
using FsCheck.Fluent;
using Duroslight.Core;

namespace Duroslight.Storage.Tests.Gftl;

/// <summary>
/// Properties of the on-disk record codec (version 3): what is written parses back exactly; a flipped bit anywhere
/// loses the header (then nothing) or exactly the extent whose data it hit; a record torn at any 512-byte boundary
/// keeps only extents whose data is whole; an intact header of another version is reported, never skipped; a
/// header sealed without the set's log key (forged by a host) is no record at all, whatever its version.
/// </summary>
public sealed class RecordFormatTests
{
    private const int Block = 4096;
    private const int SegmentBlocks = 64;
    private static readonly Config Quick = Config.QuickThrowOnFailure.WithMaxTest(300);
    private static readonly Guid Key = Guid.NewGuid();

    private static Gen<Extent[]> Extents =>
        from count in Gen.Choose(1, 12)
        from extents in Gen.ArrayOf(
            from volume in Gen.Choose(0, 3)
            from lba in Gen.Choose(0, 1 << 20)
            from blocks in Gen.Choose(1, 4)
            from seq in Gen.Choose(1, int.MaxValue)
            select new Extent(new Guid(volume, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10), lba, blocks, seq), count)
        select extents;

    [Fact]
    public void A_record_round_trips()
    {
        Check.One(Quick, Prop.ForAll(Arb.From(Extents), Arb.From(Gen.Choose(0, 1000)), (extents, seed) =>
        {
            byte[] segment = Segment(extents, seed, out _);
            ParsedSegment found = Parse(segment, out int unknown);
            Assert.Equal(0, unknown);
            ParsedRecord record = Assert.Single(found.Records);
            Assert.Equal(RecordKind.Data, record.Kind);
            Assert.Equal(5, record.Stamp);
            AssertExtents(extents, found, record, _ => true);
        }));
    }

    [Fact]
    public void Any_single_bit_flip_is_detected()
    {
        Gen<(Extent[], int, double)> cases =
            from extents in Extents
            from seed in Gen.Choose(0, 1000)
            from position in Gen.Choose(0, int.MaxValue)
            select (extents, seed, position / (double)int.MaxValue);
        Check.One(Quick, Prop.ForAll(Arb.From(cases), c =>
        {
            (Extent[] extents, int seed, double where) = c;
            byte[] segment = Segment(extents, seed, out int recordBytes);
            long bit = Math.Min((long)(where * recordBytes * 8), (recordBytes * 8L) - 1);
            segment[bit / 8] ^= (byte)(1 << (int)(bit % 8));
            ParsedSegment found = Parse(segment, out _);
            if (bit < Block * 8)
            {
                Assert.Empty(found.Records);
                return;
            }

            int hitBlock = (int)(bit / 8 / Block);
            ParsedRecord record = Assert.Single(found.Records);
            AssertExtents(extents, found, record, range => hitBlock < range.Start || hitBlock >= range.End);
        }));
    }

    [Fact]
    public void A_torn_record_keeps_only_whole_extents()
    {
        Gen<(Extent[], int, int)> cases =
            from extents in Extents
            from seed in Gen.Choose(0, 1000)
            from cut in Gen.Choose(0, int.MaxValue)
            select (extents, seed, cut);
        Check.One(Quick, Prop.ForAll(Arb.From(cases), c =>
        {
            (Extent[] extents, int seed, int cutChoice) = c;
            byte[] segment = Segment(extents, seed, out int recordBytes);

            // The device kept the first `cut` bytes (512-byte sectors); the rest still holds older contents.
            int cut = cutChoice % (recordBytes / 512) * 512;
            new Random(seed + 1).NextBytes(segment.AsSpan(cut, recordBytes - cut));
            ParsedSegment found = Parse(segment, out _);
            if (cut < Block)
            {
                Assert.Empty(found.Records);
                return;
            }

            ParsedRecord record = Assert.Single(found.Records);
            AssertExtents(extents, found, record, range => range.End * Block <= cut);
        }));
    }

    [Fact]
    public void An_intact_header_of_an_unknown_version_is_reported()
    {
        byte[] segment = Segment([new Extent(Guid.NewGuid(), 8, 2, 9)], 1, out _);
        BinaryPrimitives.WriteUInt16LittleEndian(segment.AsSpan(8), 4);
        Reseal(segment, Key);
        Assert.Empty(Parse(segment, out int unknown).Records);
        Assert.Equal(4, unknown);
    }

    /// <summary>
    /// What a host could write into its data: a well-formed header (any version, even the unkeyed CRC of version 2)
    /// with data whose CRCs match, sealed with any key but the set's. The scan sees nothing there, and an "unknown
    /// version" forged this way cannot make it refuse the device either.
    /// </summary>
    [Fact]
    public void A_header_sealed_without_the_set_key_is_not_a_record()
    {
        Gen<(Extent[], int, Guid, int)> cases =
            from extents in Extents
            from seed in Gen.Choose(0, 1000)
            from guess in Gen.Elements(Guid.Empty, Guid.NewGuid(), Guid.NewGuid())
            from version in Gen.Elements(2, 3, 4, 99)
            select (extents, seed, guess, version);
        Check.One(Quick, Prop.ForAll(Arb.From(cases), c =>
        {
            (Extent[] extents, int seed, Guid guess, int version) = c;
            byte[] segment = Segment(extents, seed, out _, guess);
            BinaryPrimitives.WriteUInt16LittleEndian(segment.AsSpan(8), (ushort)version);
            if (version == 2)
            {
                // Version 2's CRC was the plain CRC32C of the header.
                BinaryPrimitives.WriteUInt32LittleEndian(segment.AsSpan(24), 0);
                BinaryPrimitives.WriteUInt32LittleEndian(segment.AsSpan(24), Crc32C.Compute(segment.AsSpan(0, Block)));
            }
            else
            {
                Reseal(segment, guess);
            }

            Assert.Empty(Parse(segment, out int unknown).Records);
            Assert.Equal(0, unknown);
        }));
    }

    /// <summary>A segment holding one data record of <paramref name="extents"/> at block 0 (random data, random rest).</summary>
    private static byte[] Segment(Extent[] extents, int seed, out int recordBytes, Guid? key = null)
    {
        var segment = new byte[SegmentBlocks * Block];
        int dataBlocks = extents.Sum(e => e.Count);
        new Random(seed).NextBytes(segment.AsSpan(Block, dataBlocks * Block));
        RecordFormat.WriteHeader(segment, RecordKind.Data, 5, extents, segment.AsSpan(Block, dataBlocks * Block), key ?? Key);
        recordBytes = (1 + dataBlocks) * Block;
        return segment;
    }

    private static ParsedSegment Parse(byte[] segment, out int unknownVersion)
    {
        var found = new ParsedSegment();
        RecordParser.Parse(segment, Key, found, out unknownVersion);
        return found;
    }

    /// <summary>The header's CRC again after an edit, keyed as the format says: the key in the last 16 bytes, zeros on disk.</summary>
    private static void Reseal(byte[] segment, Guid key)
    {
        byte[] header = segment[..Block];
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(24), 0);
        key.TryWriteBytes(header.AsSpan(Block - 16));
        BinaryPrimitives.WriteUInt32LittleEndian(segment.AsSpan(24), Crc32C.Compute(header));
    }

    /// <summary>The record holds exactly the extents whose block range <paramref name="kept"/> accepts, at their blocks.</summary>
    private static void AssertExtents(Extent[] extents, ParsedSegment found, ParsedRecord record, Func<(int Start, int End), bool> kept)
    {
        var expected = new List<ParsedExtent>();
        int block = 1;
        foreach (Extent extent in extents)
        {
            if (kept((block, block + extent.Count)))
            {
                expected.Add(new ParsedExtent(extent, block));
            }

            block += extent.Count;
        }

        Assert.Equal(expected, found.ExtentsOf(record).ToArray());
    }
}
