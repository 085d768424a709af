using Duroslight.Protocol.Nvme;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Xunit;
using static Duroslight.Protocol.Tests.Nvme.WireLayout;

namespace Duroslight.Protocol.Tests.Nvme;

/// <summary>FsCheck properties (FsCheck.Xunit: a failure names the seed to replay), each checked against a simple model.</summary>
public class NvmeEncoderPropertyTests
{

    /// <summary>Distinct ascending NSIDs, sometimes more than 1024 of them, sometimes near uint.MaxValue.</summary>
    private static readonly Gen<uint[]> AscendingNsids =
        from count in Gen.Frequency((3, Gen.Choose(0, 64)), (1, Gen.Choose(1000, 2100)))
        from baseId in Gen.Elements(1u, 1000u, 0xFFFF_F000u)
        from steps in Gen.ArrayOf(Gen.Choose(1, 3), count)
        select Accumulate(baseId, steps);

    private static uint[] Accumulate(uint start, int[] steps)
    {
        var ids = new List<uint>(steps.Length);
        ulong cur = start;
        foreach (int s in steps)
        {
            if (cur > 0xFFFF_FFFD) break; // NSIDs FFFFFFFEh/FFFFFFFFh are never active
            ids.Add((uint)cur);
            cur += (ulong)s;
        }
        return ids.ToArray();
    }

    [Property(MaxTest = 300)]
    public Property Active_namespace_list_matches_filter_model()
    {
        var arb = (from ids in AscendingNsids
                   from pick in Gen.Choose(-1, Math.Max(0, ids.Length - 1))
                   from startAfter in Gen.Frequency(
                       (3, Gen.Constant(pick < 0 || ids.Length == 0 ? 0u : ids[pick])),
                       (1, Gen.Constant(pick < 0 || ids.Length == 0 ? 0u : ids[pick] - 1)),
                       (1, Gen.Elements(0u, 0xFFFF_FFFDu)))
                   select (ids, startAfter)).ToArbitrary();

        return Prop.ForAll(arb, t =>
        {
            var (ids, startAfter) = t;
            var page = Dirty(IdentifyPages.PageSize);
            int n = IdentifyPages.ActiveNamespaceList(page, ids, startAfter);
            uint[] expected = ids.Where(id => id > startAfter).Take(1024).ToArray();
            uint[] written = Enumerable.Range(0, n).Select(i => U32(page, i * 4)).ToArray();

            bool ascending = written.Zip(written.Skip(1)).All(p => p.First < p.Second);
            return n == expected.Length
                && n <= 1024
                && written.SequenceEqual(expected)
                && written.All(id => id > startAfter)
                && ascending
                && AllZero(page, n * 4, IdentifyPages.PageSize);
        });
    }

    [Property(MaxTest = 300)]
    public Property Copy_window_equals_slice_plus_zero_tail()
    {
        var arb = (from len in Gen.Choose(0, 3000)
                   from full in Gen.ArrayOf(Gen.Choose(1, 255).Select(i => (byte)i), len)
                   from offset in Gen.Choose(0, full.Length + 64)
                   from dstLen in Gen.Choose(0, 2000)
                   select (full, offset, dstLen)).ToArbitrary();

        return Prop.ForAll(arb, t =>
        {
            var (full, offset, dstLen) = t;
            var dst = Dirty(dstLen);
            bool ok = LogPages.CopyWindow(full, (ulong)offset, dst);
            if (offset > full.Length)
                return !ok && dst.All(b => b == 0xA5);
            byte[] slice = full.Skip(offset).Take(dstLen).ToArray();
            byte[] expected = slice.Concat(new byte[dstLen - slice.Length]).ToArray();
            return ok && dst.SequenceEqual(expected);
        });
    }

    private static Gen<string> PrintableAscii(int maxLength) =>
        from len in Gen.Choose(0, maxLength)
        from chars in Gen.ArrayOf(Gen.Choose(0x20, 0x7E).Select(c => (char)c), len)
        select new string(chars);

    [Property(MaxTest = 300)]
    public Property Serial_and_model_number_pad_with_spaces_and_round_trip()
    {
        var arb = (from sn in PrintableAscii(20)
                   from mn in PrintableAscii(40)
                   from fr in PrintableAscii(8)
                   select (sn, mn, fr)).ToArbitrary();

        return Prop.ForAll(arb, t =>
        {
            var (sn, mn, fr) = t;
            var page = Dirty(IdentifyPages.PageSize);
            IdentifyPages.Controller(page, IoController() with { SerialNumber = sn, ModelNumber = mn, FirmwareRevision = fr });
            return Text(page, 4, 20) == sn.PadRight(20)
                && Text(page, 24, 40) == mn.PadRight(40)
                && Text(page, 64, 8) == fr.PadRight(8)
                && WireStrings.ReadAsciiPadded(page.AsSpan(4, 20)) == sn.TrimEnd(' ')
                && WireStrings.ReadAsciiPadded(page.AsSpan(24, 40)) == mn.TrimEnd(' ')
                && WireStrings.ReadAsciiPadded(page.AsSpan(64, 8)) == fr.TrimEnd(' ');
        });
    }

    [Property(MaxTest = 300)]
    public Property Nqn_round_trips_and_is_nul_padded()
    {
        var arb = (from len in Gen.Choose(1, WireStrings.MaxNqnBytes)
                   from chars in Gen.ArrayOf(Gen.Choose(0x21, 0x7E).Select(c => (char)c), len)
                   select new string(chars)).ToArbitrary();

        return Prop.ForAll(arb, nqn =>
        {
            var field = Dirty(256);
            WireStrings.WriteNqn(field, nqn);
            return WireStrings.ReadNqn(field) == nqn && AllZero(field, nqn.Length, 256);
        });
    }
}
