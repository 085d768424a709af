using System.Buffers.Binary;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Wire;

namespace Duroslight.Protocol.Engine;

/// <summary>Command intake and data movement: capsules, in-capsule data, R2T/H2CData, C2HData and responses.</summary>
public sealed partial class TargetConnection
{
    private HeaderVerdict OnCapsuleHeader(ReadOnlySpan<byte> header, int dataLength, out Memory<byte> destination, out FramingError error)
    {
        destination = default;
        error = default;
        var sqe = header.Slice(PduLayout.CommonHeaderSize, SubmissionEntry.Size);
        var cmd = new SubmissionEntry(sqe);
        _sqHeadCount++;
        Controller?.Touch(_now);
        if (_slotByCid.TryGetValue(cmd.CommandId, out int existing))
        {
            if (_slots[existing].State != CommandState.AwaitingEvent)
            {
                // The original command keeps running; the duplicate is refused and its data dropped.
                WriteResponse(cmd.CommandId, NvmeStatus.CommandIdConflict, 0);
                return HeaderVerdict.Accept;
            }
            // SPDK's host aborts its AERs locally before detaching, without telling us, and reuses their CIDs (its
            // Property Get of CC then failed with Command ID Conflict). Such a host no longer waits for that AER:
            // retire it silently; pending events stay queued for the next AER.
            _parkedAers.Remove(_slots[existing]);
            Release(_slots[existing]);
        }
        if (!_freeSlots.TryPop(out int index))
        {
            // More outstanding commands than the SQ the host connected: refuse without growing.
            WriteResponse(cmd.CommandId, NvmeStatus.CommandSequenceError, 0);
            return HeaderVerdict.Accept;
        }
        var slot = _slots[index];
        sqe.CopyTo(slot.Sqe);
        slot.Cid = cmd.CommandId;
        slot.State = CommandState.ReceivingCapsuleData;
        _slotByCid.Add(slot.Cid, index);
        _receiving = slot;
        if (dataLength > 0) destination = AcceptInCapsuleData(slot, dataLength);
        return HeaderVerdict.Accept;
    }

    /// <summary>Where in-capsule data goes: the slot's buffer, or nowhere when the SGL does not describe it.</summary>
    private Memory<byte> AcceptInCapsuleData(CommandSlot slot, int dataLength)
    {
        var cmd = slot.Command;
        if (cmd.SglType != SglTypes.InCapsuleData) slot.DeferredStatus = NvmeStatus.SglDescriptorTypeInvalid;
        else if (cmd.Direction != DataDirection.HostToController) slot.DeferredStatus = NvmeStatus.InvalidField;
        else if (cmd.SglLength != dataLength) slot.DeferredStatus = NvmeStatus.DataSglLengthInvalid;
        else if (cmd.SglAddress != 0) slot.DeferredStatus = NvmeStatus.SglOffsetInvalid;
        if (!slot.DeferredStatus.IsSuccess) return default;
        slot.RentBuffer(dataLength);
        slot.Received = dataLength;
        return slot.Data;
    }

    private void OnCapsuleComplete(CommandSlot slot, bool dataDigestOk)
    {
        if (!dataDigestOk) Complete(slot, NvmeStatus.TransientTransportError);
        else if (!slot.DeferredStatus.IsSuccess) Complete(slot, slot.DeferredStatus);
        else StartCommand(slot);
    }

    /// <summary>All capsule bytes are in: fetch host data with R2Ts if the command needs it, else execute.</summary>
    private void StartCommand(CommandSlot slot)
    {
        var cmd = slot.Command;
        uint sglLength = cmd.SglLength;
        if (cmd.Direction != DataDirection.HostToController || sglLength == 0 || slot.HasBuffer)
        {
            Execute(slot);
            return;
        }
        if (cmd.SglType != SglTypes.TransportDataBlock)
        {
            Complete(slot, NvmeStatus.SglDescriptorTypeInvalid);
            return;
        }
        var status = ValidateBeforeTransfer(slot);
        if (!status.IsSuccess)
        {
            Complete(slot, status);
            return;
        }
        if (_budgetWaiters.Count > 0 || !Context.HostData.TryReserve((int)sglLength))
        {
            slot.State = CommandState.AwaitingBudget;
            _budgetWaiters.Enqueue(slot);
            Context.HostData.NoteWait();
            return;
        }
        BeginHostTransfer(slot, (int)sglLength);
    }

    /// <summary>Budget reserved: rent the buffer and ask for the data.</summary>
    private void BeginHostTransfer(CommandSlot slot, int length)
    {
        slot.BudgetReserved = length;
        slot.RentBuffer(length);
        slot.State = CommandState.ReceivingH2CData;
        _awaitingH2CData++;
        IssueR2Ts(slot);
    }

    /// <summary>Writes that waited for the shard's budget, in arrival order, as far as it now allows.</summary>
    private void StartBudgetWaiters()
    {
        while (_budgetWaiters.TryPeek(out var slot))
        {
            int length = (int)slot.Command.SglLength;
            if (!Context.HostData.TryReserve(length)) return;
            _budgetWaiters.Dequeue();
            BeginHostTransfer(slot, length);
        }
    }

    /// <summary>Checks a host-to-controller command before asking for its data, so bad commands move no bytes.</summary>
    private NvmeStatus ValidateBeforeTransfer(CommandSlot slot)
    {
        var cmd = slot.Command;
        // Before Connect (or CC.EN) only fabrics commands run: refuse the rest before asking for their data.
        if (cmd.Opcode != AdminOpcode.Fabrics && Controller is not { IsReady: true }) return NvmeStatus.CommandSequenceError;
        // Writes first: a write beyond MDTS is Invalid Field (as a read is), which ValidateReadWrite decides; it also
        // caps the SGL length at MDTS. Other commands only get the buffer bound.
        if (QueueId != 0 && AnaAccess.Refuse(_target, cmd.Nsid) is { } ana) return ana; // an inaccessible path asks for no data
        if (QueueId != 0 && cmd.Opcode == IoOpcode.Write) return ValidateReadWrite(cmd, out _, out _, out _);
        if (cmd.SglLength > _options.MaxTransferBytes) return NvmeStatus.DataSglLengthInvalid;
        return NvmeStatus.Success;
    }

    /// <summary>Sends R2Ts while fewer than MAXR2T+1 are outstanding; each asks for at most MAXH2CDATA bytes.</summary>
    private void IssueR2Ts(CommandSlot slot)
    {
        int chunk = _options.MaxH2CData;
        while (slot.R2TIssuedEnd < slot.DataLength)
        {
            int issued = (slot.R2TIssuedEnd + chunk - 1) / chunk;
            int done = slot.Received / chunk;
            if (issued - done >= _maxR2TPerCommand) break;
            int length = Math.Min(chunk, slot.DataLength - slot.R2TIssuedEnd);
            int n = PduWriter.R2T(_out.GetSpan(PduLayout.R2THeaderSize + PduLayout.DigestSize), slot.Cid,
                (ushort)slot.Index, (uint)slot.R2TIssuedEnd, (uint)length, _framer.HeaderDigest);
            _out.Advance(n);
            slot.R2TIssuedEnd += length;
        }
    }

    private HeaderVerdict OnH2CDataHeader(ReadOnlySpan<byte> h, int dataLength, out Memory<byte> destination, out FramingError error)
    {
        destination = default;
        ushort cccid = BinaryPrimitives.ReadUInt16LittleEndian(h[PduLayout.OffCccid..]);
        ushort ttag = BinaryPrimitives.ReadUInt16LittleEndian(h[PduLayout.OffTtag..]);
        uint datao = BinaryPrimitives.ReadUInt32LittleEndian(h[PduLayout.OffDataOffset..]);
        uint datal = BinaryPrimitives.ReadUInt32LittleEndian(h[PduLayout.OffDataLength..]);
        if (ttag >= _slots.Length || _slots[ttag].State != CommandState.ReceivingH2CData)
            return Fatal(TermReqFes.InvalidPduHeaderField, PduLayout.OffTtag, out error);
        var slot = _slots[ttag];
        if (slot.Cid != cccid) return Fatal(TermReqFes.InvalidPduHeaderField, PduLayout.OffCccid, out error);
        if (datal != dataLength || datal == 0) return Fatal(TermReqFes.InvalidPduHeaderField, PduLayout.OffDataLength, out error);
        if (datao != slot.Received || datao + (ulong)datal > (ulong)slot.R2TIssuedEnd)
            return Fatal(TermReqFes.DataTransferOutOfRange, PduLayout.OffDataOffset, out error);
        error = default;
        destination = slot.Buffer.Slice((int)datao, (int)datal);
        _receiving = slot;
        _receivingLength = (int)datal;
        return HeaderVerdict.Accept;
    }

    private void OnH2CDataComplete(CommandSlot slot, bool dataDigestOk)
    {
        slot.Received += _receivingLength;
        if (!dataDigestOk) slot.DeferredStatus = NvmeStatus.TransientTransportError;
        if (slot.Received < slot.DataLength)
        {
            IssueR2Ts(slot);
            return;
        }
        _awaitingH2CData--;
        slot.ReleaseBudget();
        StartBudgetWaiters();
        // A bad data digest fails this command only (after its data is drained), not the connection.
        if (!slot.DeferredStatus.IsSuccess) Complete(slot, slot.DeferredStatus);
        else Execute(slot);
    }

    /// <summary>Finishes a command: C2HData for any data to return, then the CapsuleResp; frees the slot.</summary>
    private void Complete(CommandSlot slot, NvmeStatus status, ulong result = 0)
    {
        var cmd = slot.Command;
        // On I/O queues the host's SGL bounds what we send (it protects the host's memory): send what fits, and never
        // a zero-length C2HData. On admin and discovery queues the command defines the size (Identify 4096 bytes, Get
        // Log Page NUMD), and some hosts (Lightbits' discovery-client) send a shorter SGL, even 0, expecting it all.
        int length = QueueId == 0 ? slot.DataLength : (int)Math.Min((uint)slot.DataLength, cmd.SglLength);
        bool sendData = status.IsSuccess && slot.HasBuffer && length > 0
            && cmd.Direction == DataDirection.ControllerToHost;
        if (sendData)
        {
            // SUCCESS saves the CapsuleResp only for I/O reads without SQ flow control; admin data is always
            // followed by a CapsuleResp (strict discovery hosts expect exactly that).
            bool success = _sqFlowControlDisabled && QueueId != 0 && cmd.Opcode == IoOpcode.Read;
            WriteC2HData(slot.Cid, slot.Buffer.Span[..length], success);
            if (!success) WriteResponse(slot.Cid, status, result);
        }
        else
        {
            WriteResponse(slot.Cid, status, result);
        }
        Release(slot);
    }

    private void Release(CommandSlot slot)
    {
        _slotByCid.Remove(slot.Cid);
        slot.Reset();
        _freeSlots.Push(slot.Index);
    }

    private void WriteC2HData(ushort cid, ReadOnlySpan<byte> data, bool success)
    {
        var flags = PduFlags.LastPdu | (success ? PduFlags.Success : PduFlags.None);
        bool ddgst = _framer.DataDigest;
        var span = _out.GetSpan(PduWriter.MaxHeaderBytes + data.Length + PduLayout.DigestSize);
        int n = PduWriter.C2HDataHeader(span, cid, 0, data.Length, flags, _framer.HeaderDigest, ddgst, _hostDataAlignment);
        data.CopyTo(span[n..]);
        n += data.Length;
        if (ddgst) n += PduWriter.DataDigest(span[n..], data);
        _out.Advance(n);
    }

    private void WriteResponse(ushort cid, NvmeStatus status, ulong result)
    {
        var cqe = new CompletionEntry(result, SqHead, QueueId, cid, status);
        _out.Advance(PduWriter.CapsuleResp(_out.GetSpan(PduLayout.CapsuleRespHeaderSize + PduLayout.DigestSize), cqe, _framer.HeaderDigest));
    }

    private ushort SqHead => (ushort)(_sqHeadCount % (uint)_sqEntries);

    private void SubmitStorage(CommandSlot slot)
    {
        slot.State = CommandState.Executing;
        _inFlightStorage++;
        _storageQueue.Enqueue(slot.Request);
    }
}
