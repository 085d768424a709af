using System.Buffers.Binary;

namespace Duroslight.Protocol.Wire;

/// <summary>A fatal framing error: the FES and FEI to put in the TermReq.</summary>
public readonly record struct FramingError(TermReqFes Fes, uint Fei);

/// <summary>What a sink answers to a PDU header.</summary>
public enum HeaderVerdict
{
    /// <summary>Receive the data (if any) into the destination the sink gave.</summary>
    Accept,
    /// <summary>Protocol violation: send a TermReq with the sink's error and close.</summary>
    Fatal,
    /// <summary>The peer ended the connection (it sent a TermReq): close without answering.</summary>
    Close,
}

/// <summary>The consumer of framed PDUs: the target connection or the host queue.</summary>
public interface IPduSink
{
    /// <summary>
    /// A complete, digest-checked header. <paramref name="header"/> is HLEN bytes and is valid only during the call.
    /// On <see cref="HeaderVerdict.Accept"/> with data, <paramref name="destination"/> must be exactly
    /// <paramref name="dataLength"/> bytes long (or empty to discard the data).
    /// </summary>
    HeaderVerdict OnHeader(ReadOnlySpan<byte> header, int dataLength, out Memory<byte> destination, out FramingError error);

    /// <summary>The PDU's data (if any) has fully arrived; <paramref name="dataDigestOk"/> is false on a digest mismatch.</summary>
    HeaderVerdict OnPduComplete(bool dataDigestOk, out FramingError error);
}

/// <summary>
/// Streaming NVMe/TCP de-framer: bytes in, headers and data out to an <see cref="IPduSink"/>. It validates the
/// common header (type, HLEN, PDO, PLEN, digest flags), checks the header digest and streams data straight into
/// the sink's buffer while folding the data digest, so no PDU is ever buffered whole. Sans-IO: no sockets, no threads.
/// </summary>
public sealed class PduFramer
{
    private enum Phase { Header, Padding, Data, DataDigest, Dead }

    private const int MaxHeaderWithDigest = PduLayout.ICReqSize + PduLayout.DigestSize;

    private readonly IPduSink _sink;
    private readonly Func<PduType, bool> _acceptsType;
    private readonly byte[] _header = new byte[MaxHeaderWithDigest];
    private readonly byte[] _digest = new byte[PduLayout.DigestSize];
    private Phase _phase;
    private int _headerFilled;
    private int _headerTarget = PduLayout.CommonHeaderSize;
    private int _padLeft;
    private Memory<byte> _data;
    private int _dataLength;
    private int _dataFilled;
    private bool _pduHasDataDigest;
    private readonly System.IO.Hashing.Crc32 _dataCrc = Crc32C.CreateRunning();
    private int _digestFilled;

    /// <param name="sink">Receives the PDUs.</param>
    /// <param name="acceptsType">Which PDU types the peer may send (a target accepts host-to-controller types).</param>
    public PduFramer(IPduSink sink, Func<PduType, bool> acceptsType)
    {
        _sink = sink;
        _acceptsType = acceptsType;
    }

    /// <summary>Negotiated at connection initialisation; ICReq/ICResp always travel without digests.</summary>
    public bool HeaderDigest { get; set; }

    public bool DataDigest { get; set; }

    /// <summary>The largest PLEN accepted for a type (the sink's buffer limits); larger PDUs are fatal.</summary>
    public Func<PduType, int> MaxPduLength { get; set; } = static _ => 1 << 20;

    public bool IsDead => _phase == Phase.Dead;

    /// <summary>Part of a PDU has arrived and the rest is owed.</summary>
    public bool InsidePdu => _phase is not (Phase.Header or Phase.Dead) || _headerFilled > 0;

    /// <summary>The first bytes of the PDU header being (or last) processed: what a TermReq echoes.</summary>
    public ReadOnlySpan<byte> CurrentHeader => _header.AsSpan(0, Math.Min(_headerFilled, _headerTarget));

    /// <summary>
    /// Consumes <paramref name="input"/>. Returns null while all is well; a framing error when the stream is
    /// broken (the framer is then dead: the caller sends a TermReq and closes); Close for a peer TermReq.
    /// </summary>
    public HeaderVerdict Feed(ReadOnlySpan<byte> input, out FramingError error)
    {
        error = default;
        while (!input.IsEmpty)
        {
            var verdict = _phase switch
            {
                Phase.Header => FeedHeader(ref input, out error),
                Phase.Padding => FeedPadding(ref input),
                Phase.Data => FeedData(ref input, out error),
                Phase.DataDigest => FeedDigest(ref input, out error),
                _ => HeaderVerdict.Close,
            };
            if (verdict != HeaderVerdict.Accept)
            {
                _phase = Phase.Dead;
                return verdict;
            }
        }
        return HeaderVerdict.Accept;
    }

    private HeaderVerdict FeedHeader(ref ReadOnlySpan<byte> input, out FramingError error)
    {
        error = default;
        int take = Math.Min(_headerTarget - _headerFilled, input.Length);
        input[..take].CopyTo(_header.AsSpan(_headerFilled));
        input = input[take..];
        _headerFilled += take;
        if (_headerFilled < _headerTarget) return HeaderVerdict.Accept;
        if (_headerTarget == PduLayout.CommonHeaderSize)
        {
            var check = ValidateCommonHeader(out error);
            if (check != HeaderVerdict.Accept) return check;
            if (_headerFilled < _headerTarget) return HeaderVerdict.Accept;
        }
        return HeaderComplete(out error);
    }

    /// <summary>Checks the 8-byte common header and sets how many header bytes (HLEN + digest) to collect.</summary>
    private HeaderVerdict ValidateCommonHeader(out FramingError error)
    {
        error = default;
        var type = (PduType)_header[PduLayout.OffType];
        var flags = (PduFlags)_header[PduLayout.OffFlags];
        int hlen = _header[PduLayout.OffHlen];
        int plen = BinaryPrimitives.ReadInt32LittleEndian(_header.AsSpan(PduLayout.OffPlen));
        int expectedHlen = PduLayout.HeaderLength(type);
        if (expectedHlen == 0 || !_acceptsType(type)) return Fail(TermReqFes.InvalidPduHeaderField, PduLayout.OffType, out error);
        if (hlen != expectedHlen) return Fail(TermReqFes.InvalidPduHeaderField, PduLayout.OffHlen, out error);
        bool hdgst = PduLayout.MayCarryHeaderDigest(type) && HeaderDigest;
        if (PduLayout.MayCarryHeaderDigest(type) && ((flags & PduFlags.HeaderDigest) != 0) != hdgst)
            return Fail(TermReqFes.InvalidPduHeaderField, PduLayout.OffFlags, out error);
        int headerTotal = hlen + (hdgst ? PduLayout.DigestSize : 0);
        if (plen < headerTotal) return Fail(TermReqFes.InvalidPduHeaderField, PduLayout.OffPlen, out error);
        if (plen > MaxPduLength(type))
        {
            // Too much data is a limit exceeded; a PDU that carries no data and is still too long has a bad PLEN.
            var fes = PduLayout.MayCarryDataDigest(type) ? TermReqFes.DataTransferLimitExceeded : TermReqFes.InvalidPduHeaderField;
            return Fail(fes, PduLayout.OffPlen, out error);
        }
        _headerTarget = headerTotal;
        return HeaderVerdict.Accept;
    }

    /// <summary>Header and digest are in: verify, work out the data layout, hand the header to the sink.</summary>
    private HeaderVerdict HeaderComplete(out FramingError error)
    {
        var type = (PduType)_header[PduLayout.OffType];
        var flags = (PduFlags)_header[PduLayout.OffFlags];
        int hlen = _header[PduLayout.OffHlen];
        int pdo = _header[PduLayout.OffPdo];
        int plen = BinaryPrimitives.ReadInt32LittleEndian(_header.AsSpan(PduLayout.OffPlen));
        if (_headerTarget > hlen && !HeaderDigestMatches(hlen))
            return Fail(TermReqFes.HeaderDigestError, 0, out error);

        int dataLength = 0;
        _pduHasDataDigest = false;
        _padLeft = 0;
        if (plen > _headerTarget)
        {
            bool ddgst = (flags & PduFlags.DataDigest) != 0;
            if (!PduLayout.MayCarryDataDigest(type) && type is not (PduType.H2CTermReq or PduType.C2HTermReq))
                return Fail(TermReqFes.InvalidPduHeaderField, PduLayout.OffPlen, out error);
            if (PduLayout.MayCarryDataDigest(type) && ddgst != DataDigest)
                return Fail(TermReqFes.InvalidPduHeaderField, PduLayout.OffFlags, out error);
            if (type is PduType.H2CTermReq or PduType.C2HTermReq) { pdo = hlen; ddgst = false; }
            // PDO 0 means "right after the header (and its digest)": Linux's and SPDK's targets accept it (they check
            // PDO only against CPDA, which is 0 here), and Lightbits' discovery-client sends its Connect that way.
            // A PDO inside the header or past PLEN is still refused.
            else if (pdo == 0) pdo = _headerTarget;
            if (pdo < _headerTarget || pdo > plen)
                return Fail(TermReqFes.InvalidPduHeaderField, PduLayout.OffPdo, out error);
            _pduHasDataDigest = ddgst;
            dataLength = plen - pdo - (ddgst ? PduLayout.DigestSize : 0);
            if (dataLength <= 0) return Fail(TermReqFes.InvalidPduHeaderField, PduLayout.OffPlen, out error);
            _padLeft = pdo - _headerTarget;
        }

        var verdict = _sink.OnHeader(_header.AsSpan(0, hlen), dataLength, out _data, out error);
        if (verdict != HeaderVerdict.Accept) return verdict;
        if (!_data.IsEmpty && _data.Length != dataLength)
            throw new InvalidOperationException("PDU sink returned a destination of the wrong length");
        _dataLength = dataLength;
        _dataFilled = 0;
        _dataCrc.Reset();
        _digestFilled = 0;
        if (dataLength == 0) return CompletePdu(true, out error);
        _phase = _padLeft > 0 ? Phase.Padding : Phase.Data;
        return HeaderVerdict.Accept;
    }

    private bool HeaderDigestMatches(int hlen) =>
        BinaryPrimitives.ReadUInt32LittleEndian(_header.AsSpan(hlen)) == Crc32C.Compute(_header.AsSpan(0, hlen));

    private HeaderVerdict FeedPadding(ref ReadOnlySpan<byte> input)
    {
        int take = Math.Min(_padLeft, input.Length);
        input = input[take..];
        _padLeft -= take;
        if (_padLeft == 0) _phase = Phase.Data;
        return HeaderVerdict.Accept;
    }

    private HeaderVerdict FeedData(ref ReadOnlySpan<byte> input, out FramingError error)
    {
        error = default;
        int take = Math.Min(_dataLength - _dataFilled, input.Length);
        var chunk = input[..take];
        if (!_data.IsEmpty) chunk.CopyTo(_data.Span[_dataFilled..]);
        if (_pduHasDataDigest) _dataCrc.Append(chunk);
        input = input[take..];
        _dataFilled += take;
        if (_dataFilled < _dataLength) return HeaderVerdict.Accept;
        if (_pduHasDataDigest)
        {
            _phase = Phase.DataDigest;
            return HeaderVerdict.Accept;
        }
        return CompletePdu(true, out error);
    }

    private HeaderVerdict FeedDigest(ref ReadOnlySpan<byte> input, out FramingError error)
    {
        error = default;
        int take = Math.Min(PduLayout.DigestSize - _digestFilled, input.Length);
        input[..take].CopyTo(_digest.AsSpan(_digestFilled));
        input = input[take..];
        _digestFilled += take;
        if (_digestFilled < PduLayout.DigestSize) return HeaderVerdict.Accept;
        bool ok = BinaryPrimitives.ReadUInt32LittleEndian(_digest) == _dataCrc.GetCurrentHashAsUInt32();
        return CompletePdu(ok, out error);
    }

    private HeaderVerdict CompletePdu(bool dataDigestOk, out FramingError error)
    {
        _phase = Phase.Header;
        _data = default;
        var verdict = _sink.OnPduComplete(dataDigestOk, out error);
        // Reset after the sink ran, so a TermReq it asks for can still echo this PDU's header.
        _headerTarget = PduLayout.CommonHeaderSize;
        _headerFilled = 0;
        return verdict;
    }

    private static HeaderVerdict Fail(TermReqFes fes, uint fei, out FramingError error)
    {
        error = new FramingError(fes, fei);
        return HeaderVerdict.Fatal;
    }
}
