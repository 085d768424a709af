using System.Buffers.Binary;
using Duroslight.Storage.Gftl;
using FsCheck;
using FsCheck.Fluent;
using Duroslight.Core;

namespace Duroslight.Storage.Tests.Gftl;

/// <summary>
/// Properties of the on-disk record codec (version 2): what is written parses back exactly; a flipped bit anywhere
/// loses the header (then nothing) or exactly the extent whose data it hit; a record torn at any 512-byte boundary
/// keeps only extents whose data is whole; an intact header of another version is reported, never skipped.
/// </summary>
public sealed class RecordFormatTests
{
    private const int Block = 4096;
    private const int SegmentBlocks = 64;
    private static readonly Config Quick = Config.QuickThrowOnFailure.WithMaxTest(300);

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
            List<ParsedRecord> found = Parse(segment, out int unknown);
            Assert.Equal(0, unknown);
            ParsedRecord record = Assert.Single(found);
            Assert.Equal(RecordKind.Data, record.Kind);
            Assert.Equal(5, record.Stamp);
            AssertExtents(extents, record, _ => true);
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
            List<ParsedRecord> found = Parse(segment, out _);
            if (bit < Block * 8)
            {
                Assert.Empty(found);
                return;
            }

            int hitBlock = (int)(bit / 8 / Block);
            ParsedRecord record = Assert.Single(found);
            AssertExtents(extents, record, range => hitBlock < range.Start || hitBlock >= range.End);
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
            List<ParsedRecord> found = Parse(segment, out _);
            if (cut < Block)
            {
                Assert.Empty(found);
                return;
            }

            ParsedRecord record = Assert.Single(found);
            AssertExtents(extents, record, range => range.End * Block <= cut);
        }));
    }

    [Fact]
    public void An_intact_header_of_an_unknown_version_is_reported()
    {
        byte[] segment = Segment([new Extent(Guid.NewGuid(), 8, 2, 9)], 1, out _);
        BinaryPrimitives.WriteUInt16LittleEndian(segment.AsSpan(8), 3);
        BinaryPrimitives.WriteUInt32LittleEndian(segment.AsSpan(24), 0);
        BinaryPrimitives.WriteUInt32LittleEndian(segment.AsSpan(24), Crc32C.Compute(segment.AsSpan(0, Block)));
        Assert.Empty(Parse(segment, out int unknown));
        Assert.Equal(3, unknown);
    }

    [Fact]
    public void Version_1_records_are_still_read_all_or_nothing()
    {
        Extent[] extents = [new Extent(Guid.NewGuid(), 8, 2, 9), new Extent(Guid.NewGuid(), 100, 1, 10)];
        byte[] segment = Segment(extents, 2, out _);

        // Version 1: no CRC per extent (those bytes were padding), one CRC over all the data.
        BinaryPrimitives.WriteUInt16LittleEndian(segment.AsSpan(8), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(segment.AsSpan(40 + 28), 0);
        BinaryPrimitives.WriteUInt32LittleEndian(segment.AsSpan(80 + 28), 0);
        BinaryPrimitives.WriteUInt32LittleEndian(segment.AsSpan(20), Crc32C.Compute(segment.AsSpan(Block, 3 * Block)));
        BinaryPrimitives.WriteUInt32LittleEndian(segment.AsSpan(24), 0);
        BinaryPrimitives.WriteUInt32LittleEndian(segment.AsSpan(24), Crc32C.Compute(segment.AsSpan(0, Block)));
        AssertExtents(extents, Assert.Single(Parse(segment, out int unknown)), _ => true);
        Assert.Equal(0, unknown);

        segment[(3 * Block) + 5] ^= 1; // the second extent's data: the whole record goes
        Assert.Empty(Parse(segment, out _));
    }

    /// <summary>A segment holding one data record of <paramref name="extents"/> at block 0 (random data, random rest).</summary>
    private static byte[] Segment(Extent[] extents, int seed, out int recordBytes)
    {
        var segment = new byte[SegmentBlocks * Block];
        int dataBlocks = extents.Sum(e => e.Count);
        new Random(seed).NextBytes(segment.AsSpan(Block, dataBlocks * Block));
        RecordFormat.WriteHeader(segment, RecordKind.Data, 5, extents, segment.AsSpan(Block, dataBlocks * Block));
        recordBytes = (1 + dataBlocks) * Block;
        return segment;
    }

    private static List<ParsedRecord> Parse(byte[] segment, out int unknownVersion)
    {
        var found = new List<ParsedRecord>();
        RecordParser.Parse(segment, found, out unknownVersion);
        return found;
    }

    /// <summary>The record holds exactly the extents whose block range <paramref name="kept"/> accepts, at their blocks.</summary>
    private static void AssertExtents(Extent[] extents, ParsedRecord record, Func<(int Start, int End), bool> kept)
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

        Assert.Equal(expected, record.Extents);
    }
}
