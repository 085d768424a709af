using System.Buffers;

namespace Duroslight.Protocol.Engine;

/// <summary>
/// Bytes the engine wants sent, in order: bytes written into its own arrays (PDU headers, responses, copied data)
/// and, between them, data buffers sent in place (<see cref="AppendInPlace"/>: read data goes out from the buffer
/// storage filled, not copied). Arrays live on the pinned object heap, so a driver may hand
/// <see cref="BeginSend()"/>'s bytes (or the segments <see cref="BeginSend(Span{ReadOnlyMemory{byte}})"/> gathers) to
/// the kernel (io_uring) while the engine keeps appending. Until <see cref="EndSend"/> the array holding the lent
/// bytes is never written before its end: when its tail is full, live bytes move to the other of two arrays (the
/// lent one becomes the spare once the send ends). An in-place buffer goes back to its pool once the stream has
/// been sent past its end (or on <see cref="Dispose"/>). Sizes grow only to the connection's high-water mark of
/// unsent bytes, then nothing is allocated.
/// </summary>
public sealed class OutputBuffer(int initialSize = 64 * 1024, IDataBufferPool? dataOwner = null) : IDisposable
{
    /// <summary>A buffer sent in place, after the array bytes appended before it (<see cref="After"/>, a stream count).</summary>
    private readonly record struct InPlace(long After, ReadOnlyMemory<byte> Rented, int Length, bool Owned, MemoryHandle Hold = default);

    private readonly Queue<InPlace> _inPlace = new();
    private byte[] _buffer = GC.AllocateUninitializedArray<byte>(initialSize, pinned: true);
    private byte[]? _spare;
    private byte[]? _lentArray;
    private int _start;
    private int _end;
    // Array bytes ever appended and ever sent: where the in-place buffers sit between them.
    private long _appended;
    private long _sent;
    private int _headInPlaceSent;
    private long _inPlaceBytes;

    /// <summary>Unsent bytes in the arrays (not counting in-place buffers).</summary>
    public int Length => _end - _start;

    /// <summary>All unsent bytes, in-place buffers included.</summary>
    public long PendingBytes => Length + _inPlaceBytes - _headInPlaceSent;

    public bool IsEmpty => _end == _start && _inPlace.Count == 0;

    /// <summary>The unsent array bytes; the whole stream only while nothing is sent in place.</summary>
    public ReadOnlyMemory<byte> Pending => _buffer.AsMemory(_start, _end - _start);

    /// <summary>A span of at least <paramref name="size"/> writable bytes; commit them with <see cref="Advance"/>.</summary>
    public Span<byte> GetSpan(int size)
    {
        if (_buffer.Length - _end < size) MakeRoom(size);
        return _buffer.AsSpan(_end);
    }

    public void Advance(int count)
    {
        _end += count;
        _appended += count;
    }

    public void Write(ReadOnlySpan<byte> data)
    {
        data.CopyTo(GetSpan(data.Length));
        Advance(data.Length);
    }

    /// <summary>
    /// Appends the first <paramref name="length"/> bytes of <paramref name="rented"/> without copying them. The
    /// buffer now belongs to this output: it goes back to the data owner once sent.
    /// </summary>
    public void AppendInPlace(Memory<byte> rented, int length)
    {
        if (dataOwner is null) throw new InvalidOperationException("no owner to give in-place buffers back to");
        Enqueue(new InPlace(_appended, rented, length, Owned: true));
    }

    /// <summary>
    /// Memory someone else owns (storage lent it), sent in place and never given to the pool; pinned until sent (the
    /// lender, e.g. the memory store's page, does not reuse it for other data meanwhile).
    /// </summary>
    public void AppendLent(ReadOnlyMemory<byte> data, int length) =>
        Enqueue(new InPlace(_appended, data, length, Owned: false, data.Pin()));

    private void Enqueue(InPlace data)
    {
        _inPlace.Enqueue(data);
        _inPlaceBytes += data.Length;
    }

    private void GiveBack(InPlace data)
    {
        if (data.Owned) dataOwner!.Return(System.Runtime.InteropServices.MemoryMarshal.AsMemory(data.Rented));
        else data.Hold.Dispose();
    }

    /// <summary><paramref name="count"/> bytes from the front of the stream were sent (synchronous drivers).</summary>
    public void Consume(int count)
    {
        while (count > 0)
        {
            bool inPlaceNext = _inPlace.TryPeek(out var next);
            long arrayBytes = inPlaceNext ? next.After - _sent : _end - _start;
            if (!inPlaceNext && arrayBytes < count) throw new ArgumentOutOfRangeException(nameof(count), "more than is pending");
            if (arrayBytes > 0)
            {
                int n = (int)Math.Min(arrayBytes, count);
                _start += n;
                _sent += n;
                count -= n;
                continue;
            }
            int taken = Math.Min(next.Length - _headInPlaceSent, count);
            _headInPlaceSent += taken;
            count -= taken;
            if (_headInPlaceSent < next.Length) break;
            _inPlace.Dequeue();
            _inPlaceBytes -= next.Length;
            _headInPlaceSent = 0;
            GiveBack(next);
        }
        if (_start == _end) _start = _end = 0;
    }

    /// <summary>Lends the pending bytes to an asynchronous send; they stay put until <see cref="EndSend"/>.</summary>
    public ReadOnlyMemory<byte> BeginSend()
    {
        if (_inPlace.Count > 0) throw new InvalidOperationException("in-place buffers pending: gather the segments");
        if (_lentArray is not null) throw new InvalidOperationException("a send is already in flight");
        _lentArray = _buffer;
        return Pending;
    }

    /// <summary>
    /// Lends the front of the stream as at most <paramref name="segments"/>.Length pieces, in order (array bytes and
    /// in-place buffers), for a gathering send (sendmsg); returns how many it filled. They stay put until
    /// <see cref="EndSend"/>.
    /// </summary>
    public int BeginSend(Span<ReadOnlyMemory<byte>> segments)
    {
        if (_lentArray is not null) throw new InvalidOperationException("a send is already in flight");
        _lentArray = _buffer;
        int count = 0, at = _start, skip = _headInPlaceSent;
        long position = _sent;
        foreach (var data in _inPlace)
        {
            int before = (int)(data.After - position);
            if (before > 0 && count < segments.Length)
            {
                segments[count++] = _buffer.AsMemory(at, before);
                at += before;
                position = data.After;
            }
            if (count == segments.Length) return count;
            segments[count++] = data.Rented.Slice(skip, data.Length - skip);
            skip = 0;
        }
        if (at < _end && count < segments.Length) segments[count++] = _buffer.AsMemory(at, _end - at);
        return count;
    }

    /// <summary>The send took <paramref name="sent"/> bytes from the front of what was lent.</summary>
    public void EndSend(int sent)
    {
        if (!ReferenceEquals(_lentArray, _buffer)) _spare = _lentArray;
        _lentArray = null;
        Consume(sent);
    }

    /// <summary>Gives back every in-place buffer; call only when no send is in flight.</summary>
    public void Dispose()
    {
        while (_inPlace.TryDequeue(out var data)) GiveBack(data);
        _inPlaceBytes = _headInPlaceSent = 0;
        _buffer = [];
        _spare = _lentArray = null;
        _start = _end = 0;
    }

    private void MakeRoom(int size)
    {
        int live = _end - _start;
        bool fits = _buffer.Length - live >= size;
        if (fits && !ReferenceEquals(_buffer, _lentArray))
        {
            _buffer.AsSpan(_start, live).CopyTo(_buffer);
        }
        else
        {
            var next = _spare is { } spare && spare.Length - live >= size
                ? spare
                : GC.AllocateUninitializedArray<byte>(fits ? _buffer.Length : Math.Max(_buffer.Length * 2, live + size), pinned: true);
            _buffer.AsSpan(_start, live).CopyTo(next);
            // A lent array comes back as the spare in EndSend; any other old array is the spare now.
            _spare = ReferenceEquals(_buffer, _lentArray) ? null : _buffer;
            _buffer = next;
        }
        _start = 0;
        _end = live;
    }
}
