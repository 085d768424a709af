using System.Buffers.Binary;

namespace Duroslight.Protocol.Reservations;

/// <summary>
/// Byte forms of a reservation state: the Reservation Report's extended data structure (NVMe Base 2.0, section 7
/// Reservation Report, figure "Reservation Status Extended Data Structure", with 128-bit host identifiers) and the
/// record kept with the volume for Persist Through Power Loss.
/// </summary>
public static class ReservationCodec
{
    /// <summary>The extended structure's header; each registered controller entry is as long.</summary>
    public const int ExtendedEntryBytes = 64;

    /// <summary>CNTLID of a registrant in the dynamic controller model: FFFFh (the registration is the host's).</summary>
    public const ushort DynamicControllerId = 0xFFFF;

    private const byte RecordVersion = 1;

    /// <summary>Bytes the full report takes: the header plus one entry per registrant.</summary>
    public static int ReportLength(ReservationState state) => ExtendedEntryBytes * (1 + state.Registrants.Count);

    /// <summary>
    /// Writes as much of the extended report as fits in <paramref name="destination"/> (the host's NUMD may cut it);
    /// REGCTL always counts every registrant. GEN, RTYPE, REGCTL, PTPLS; per registrant CNTLID, RCSTS bit 0 (holds
    /// the reservation), RKEY and HOSTID.
    /// </summary>
    public static void WriteReport(ReservationState state, Span<byte> destination)
    {
        Span<byte> full = stackalloc byte[ExtendedEntryBytes];
        full.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(full, state.Generation);
        full[4] = (byte)state.Type;
        BinaryPrimitives.WriteUInt16LittleEndian(full[5..], (ushort)state.Registrants.Count);
        full[9] = state.Ptpl ? (byte)1 : (byte)0;
        Copy(full, destination, 0);
        for (int i = 0; i < state.Registrants.Count; i++)
        {
            var r = state.Registrants[i];
            full.Clear();
            BinaryPrimitives.WriteUInt16LittleEndian(full, DynamicControllerId);
            full[2] = state.IsHolder(r.Host) ? (byte)1 : (byte)0;
            BinaryPrimitives.WriteUInt64LittleEndian(full[8..], r.Key);
            BinaryPrimitives.WriteUInt128LittleEndian(full[16..], r.Host);
            Copy(full, destination, ExtendedEntryBytes * (i + 1));
        }
    }

    /// <summary>The PTPL record: version, type, PTPL, generation, holder, then (host, key) per registrant.</summary>
    public static byte[] Serialize(ReservationState state)
    {
        var bytes = new byte[1 + 1 + 1 + 4 + 1 + 16 + 4 + (state.Registrants.Count * 24)];
        var span = bytes.AsSpan();
        span[0] = RecordVersion;
        span[1] = (byte)state.Type;
        span[2] = state.Ptpl ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteUInt32LittleEndian(span[3..], state.Generation);
        span[7] = state.Holder.HasValue ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteUInt128LittleEndian(span[8..], state.Holder ?? 0);
        BinaryPrimitives.WriteInt32LittleEndian(span[24..], state.Registrants.Count);
        for (int i = 0; i < state.Registrants.Count; i++)
        {
            BinaryPrimitives.WriteUInt128LittleEndian(span[(28 + (24 * i))..], state.Registrants[i].Host);
            BinaryPrimitives.WriteUInt64LittleEndian(span[(44 + (24 * i))..], state.Registrants[i].Key);
        }
        return bytes;
    }

    /// <summary>The state a record holds; <see cref="FormatException"/> for a record that is not one.</summary>
    public static ReservationState Deserialize(ReadOnlySpan<byte> record)
    {
        if (record.Length < 28 || record[0] != RecordVersion || record[1] > (byte)ReservationType.ExclusiveAccessAllRegistrants || record[2] > 1 || record[7] > 1)
            throw new FormatException("not a reservation record");
        int count = BinaryPrimitives.ReadInt32LittleEndian(record[24..]);
        if (count < 0 || record.Length != 28 + (24L * count)) throw new FormatException("reservation record length does not match its registrants");
        var registrants = new Registrant[count];
        for (int i = 0; i < count; i++)
            registrants[i] = new Registrant(BinaryPrimitives.ReadUInt128LittleEndian(record[(28 + (24 * i))..]),
                BinaryPrimitives.ReadUInt64LittleEndian(record[(44 + (24 * i))..]));
        UInt128? holder = record[7] == 1 ? BinaryPrimitives.ReadUInt128LittleEndian(record[8..]) : null;
        return ReservationState.Restore(registrants, holder, (ReservationType)record[1], record[2] == 1, BinaryPrimitives.ReadUInt32LittleEndian(record[3..]));
    }

    private static void Copy(ReadOnlySpan<byte> entry, Span<byte> destination, int offset)
    {
        if (offset >= destination.Length) return;
        entry[..Math.Min(entry.Length, destination.Length - offset)].CopyTo(destination[offset..]);
    }
}
