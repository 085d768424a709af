using System.Text;

namespace Duroslight.Protocol.Nvme;

/// <summary>
/// The one place that writes (and reads back) the fixed-width text fields of NVMe data structures.
/// Two conventions exist on the wire:
/// <list type="bullet">
/// <item><b>ASCII string</b> (NVMe Base "ASCII string" convention: SN, MN, FR, FRS<i>n</i>): printable ASCII 20h..7Eh,
/// left-justified, padded with spaces (20h), no terminator.</item>
/// <item><b>Discovery log TRSVCID/TRADDR</b>: printable ASCII padded with NULs, as the Linux kernel target writes them.
/// libnvme trims both spaces and NULs (<c>strchomp</c> in src/nvme/fabrics.c), but Lightbits' discovery-client strips
/// only NULs, so space padding made it read port 0 and an address with trailing blanks.</item>
/// <item><b>NQN</b> (SUBNQN in Identify Controller and in discovery log entries): UTF-8, NUL-terminated, the rest of the
/// field NUL-filled. An NQN is at most 223 bytes, so a 256-byte field always keeps a terminator.</item>
/// </list>
/// All writers overwrite the whole field. They throw <see cref="ArgumentException"/> on text that does not fit or is
/// not allowed: identities are configuration, and silently truncating a serial number or NQN would make two
/// controllers look alike to a host.
/// </summary>
public static class WireStrings
{
    /// <summary>Longest NQN the spec allows (NVMe Base "NVMe Qualified Names": 223 bytes).</summary>
    public const int MaxNqnBytes = 223;

    /// <summary>Writes <paramref name="value"/> as an ASCII string field padded with spaces (20h).</summary>
    public static void WriteAsciiPadded(Span<byte> field, string value) => WriteAscii(field, value, (byte)' ');

    /// <summary>
    /// Writes <paramref name="value"/> as printable ASCII padded with <paramref name="pad"/>
    /// (20h for ASCII string fields; 00h only where a field is defined NUL-padded).
    /// </summary>
    public static void WriteAscii(Span<byte> field, string value, byte pad)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (value.Length > field.Length)
            throw new ArgumentException($"'{value}' is {value.Length} characters; the field holds {field.Length}.", nameof(value));
        foreach (char c in value)
        {
            if (c < 0x20 || c > 0x7E)
                throw new ArgumentException($"'{value}' has a character outside printable ASCII (20h..7Eh).", nameof(value));
        }
        int n = Encoding.ASCII.GetBytes(value, field);
        field[n..].Fill(pad);
    }

    /// <summary>Reads an ASCII string field back, trimming trailing spaces and NULs.</summary>
    public static string ReadAsciiPadded(ReadOnlySpan<byte> field) =>
        Encoding.ASCII.GetString(field.TrimEnd(" \0"u8));

    /// <summary>Writes an NQN: UTF-8, NUL-terminated, NUL-padded to the end of the field.</summary>
    public static void WriteNqn(Span<byte> field, string nqn)
    {
        ArgumentNullException.ThrowIfNull(nqn);
        int max = Math.Min(MaxNqnBytes, field.Length - 1);
        int byteCount = Encoding.UTF8.GetByteCount(nqn);
        if (byteCount > max)
            throw new ArgumentException($"NQN is {byteCount} bytes; at most {max} fit.", nameof(nqn));
        if (nqn.Contains('\0'))
            throw new ArgumentException("NQN contains a NUL character.", nameof(nqn));
        int n = Encoding.UTF8.GetBytes(nqn, field);
        field[n..].Clear();
    }

    /// <summary>Reads an NQN field: the UTF-8 text up to the first NUL.</summary>
    public static string ReadNqn(ReadOnlySpan<byte> field)
    {
        int end = field.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end < 0 ? field : field[..end]);
    }
}
