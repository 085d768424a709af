using System.Buffers.Binary;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Reservations;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Xunit;
using static Duroslight.Protocol.Reservations.ReservationType;

namespace Duroslight.Protocol.Tests.Reservations;

/// <summary>
/// The reservation rules of NVMe Base 2.0 section 8.19: every transition in tables, the access figure for all six
/// types, and a property that random command sequences from three hosts agree with <see cref="ReservationReference"/>.
/// </summary>
public sealed class ReservationStateTests
{
    private static readonly UInt128 A = 1;
    private static readonly UInt128 B = (UInt128)1 << 100; // 128-bit host IDs: the high half matters
    private static readonly UInt128 C = UInt128.MaxValue;
    private static readonly ReservationType[] AllTypes = [WriteExclusive, ExclusiveAccess, WriteExclusiveRegistrantsOnly,
        ExclusiveAccessRegistrantsOnly, WriteExclusiveAllRegistrants, ExclusiveAccessAllRegistrants];

    /// <summary>A, B registered (keys 0xA, 0xB), C not; A holds a reservation of <paramref name="type"/>.</summary>
    private static ReservationState HeldByA(ReservationType type)
    {
        var s = Ok(ReservationState.Empty.Register(A, RegisterAction.Register, false, 0, 0xA, PtplChange.NoChange));
        s = Ok(s.Register(B, RegisterAction.Register, false, 0, 0xB, PtplChange.NoChange));
        return Ok(s.Acquire(A, AcquireAction.Acquire, false, type, 0xA, 0));
    }

    private static ReservationState Ok(ReservationOutcome o)
    {
        Assert.Equal(NvmeStatus.Success, o.Status);
        return o.State;
    }

    // Figure "Command Behavior in the Presence of a Reservation": (type, read by registrant, write by registrant,
    // read by non-registrant, write by non-registrant), for a host that is not the holder.
    [Theory]
    [InlineData(WriteExclusive, true, false, true, false)]
    [InlineData(ExclusiveAccess, false, false, false, false)]
    [InlineData(WriteExclusiveRegistrantsOnly, true, true, true, false)]
    [InlineData(ExclusiveAccessRegistrantsOnly, true, true, false, false)]
    [InlineData(WriteExclusiveAllRegistrants, true, true, true, false)]
    [InlineData(ExclusiveAccessAllRegistrants, true, true, false, false)]
    public void Io_of_non_holders_follows_the_access_figure(ReservationType type, bool regRead, bool regWrite, bool otherRead, bool otherWrite)
    {
        var s = HeldByA(type);
        Assert.True(s.Permits(A, ReservationAccess.Read) && s.Permits(A, ReservationAccess.Write));
        Assert.Equal(regRead, s.Permits(B, ReservationAccess.Read));
        Assert.Equal(regWrite, s.Permits(B, ReservationAccess.Write));
        Assert.Equal(otherRead, s.Permits(C, ReservationAccess.Read));
        Assert.Equal(otherWrite, s.Permits(C, ReservationAccess.Write));
        Assert.Equal(type is WriteExclusiveAllRegistrants or ExclusiveAccessAllRegistrants, s.IsHolder(B));
    }

    [Fact]
    public void Without_a_reservation_everyone_reads_and_writes()
    {
        var s = Ok(ReservationState.Empty.Register(A, RegisterAction.Register, false, 0, 1, PtplChange.NoChange));
        Assert.True(s.Permits(C, ReservationAccess.Write));
        Assert.Null(s.Holder);
    }

    // Register: (registered key or null, action, iekey, crkey, nrkey) -> status, key afterwards (null: not registered).
    [Theory]
    [InlineData(null, RegisterAction.Register, false, 0ul, 5ul, "ok", 5ul)]
    [InlineData(5ul, RegisterAction.Register, false, 0ul, 5ul, "ok", 5ul)]        // same key again: success
    [InlineData(5ul, RegisterAction.Register, false, 0ul, 6ul, "conflict", 5ul)]  // another key: conflict
    [InlineData(5ul, RegisterAction.Register, true, 0ul, 6ul, "conflict", 5ul)]   // IEKEY does not apply to Register
    [InlineData(5ul, RegisterAction.Unregister, false, 5ul, 0ul, "ok", null)]
    [InlineData(5ul, RegisterAction.Unregister, false, 4ul, 0ul, "conflict", 5ul)]
    [InlineData(5ul, RegisterAction.Unregister, true, 4ul, 0ul, "ok", null)]
    [InlineData(null, RegisterAction.Unregister, true, 0ul, 0ul, "conflict", null)]
    [InlineData(5ul, RegisterAction.Replace, false, 5ul, 7ul, "ok", 7ul)]
    [InlineData(5ul, RegisterAction.Replace, false, 4ul, 7ul, "conflict", 5ul)]
    [InlineData(5ul, RegisterAction.Replace, true, 4ul, 7ul, "ok", 7ul)]
    [InlineData(null, RegisterAction.Replace, false, 0ul, 7ul, "conflict", null)]
    [InlineData(null, RegisterAction.Replace, true, 0ul, 7ul, "ok", 7ul)]         // IEKEY registers a new host
    public void Register_transitions(ulong? before, RegisterAction action, bool iekey, ulong crkey, ulong nrkey, string status, ulong? after)
    {
        var s = before is { } k ? Ok(ReservationState.Empty.Register(A, RegisterAction.Register, false, 0, k, PtplChange.NoChange)) : ReservationState.Empty;
        var o = s.Register(A, action, iekey, crkey, nrkey, PtplChange.NoChange);
        Assert.Equal(status, Name(o.Status));
        Assert.Equal(after, o.State.Registrants.Where(r => r.Host == A).Select(r => (ulong?)r.Key).FirstOrDefault());
        Assert.Equal(status == "ok" ? s.Generation + 1 : s.Generation, o.State.Generation);
        if (status != "ok") Assert.Same(s, o.State);
    }

    [Theory]
    [InlineData(PtplChange.Set, true)]
    [InlineData(PtplChange.Clear, false)]
    public void Cptpl_changes_ptpl_with_a_successful_register_and_reserved_is_invalid(PtplChange change, bool ptpl)
    {
        var s = ReservationState.Empty.Register(A, RegisterAction.Register, false, 0, 1, change).State;
        Assert.Equal(ptpl, s.Ptpl);
        Assert.Equal(ptpl, s.Register(B, RegisterAction.Register, false, 0, 2, PtplChange.NoChange).State.Ptpl);
        Assert.Equal(NvmeStatus.InvalidField, s.Register(B, RegisterAction.Register, false, 0, 2, PtplChange.Reserved).Status);
        Assert.Equal(NvmeStatus.ReservationConflict, s.Register(A, RegisterAction.Register, false, 0, 9, PtplChange.Set).Status);
    }

    [Fact]
    public void Acquire_needs_a_registrant_with_its_key_and_conflicts_with_another_holder_or_type()
    {
        var s = HeldByA(WriteExclusive);
        Assert.Equal(NvmeStatus.ReservationConflict, s.Acquire(C, AcquireAction.Acquire, false, WriteExclusive, 0, 0).Status);
        Assert.Equal(NvmeStatus.ReservationConflict, s.Acquire(A, AcquireAction.Acquire, false, WriteExclusive, 0xB, 0).Status);
        Assert.Equal(NvmeStatus.Success, s.Acquire(A, AcquireAction.Acquire, false, WriteExclusive, 0xA, 0).Status);
        Assert.Equal(NvmeStatus.ReservationConflict, s.Acquire(A, AcquireAction.Acquire, false, ExclusiveAccess, 0xA, 0).Status);
        Assert.Equal(NvmeStatus.ReservationConflict, s.Acquire(B, AcquireAction.Acquire, false, WriteExclusive, 0xB, 0).Status);
        Assert.Equal(NvmeStatus.InvalidField, s.Acquire(A, AcquireAction.Acquire, true, WriteExclusive, 0xA, 0).Status);
        Assert.Equal(NvmeStatus.InvalidField, s.Acquire(A, AcquireAction.Acquire, false, (ReservationType)7, 0xA, 0).Status);
        Assert.Equal(NvmeStatus.InvalidField, s.Acquire(A, (AcquireAction)3, false, WriteExclusive, 0xA, 0).Status);
        // All registrants: every registrant already holds it.
        var all = HeldByA(WriteExclusiveAllRegistrants);
        Assert.Equal(NvmeStatus.Success, all.Acquire(B, AcquireAction.Acquire, false, WriteExclusiveAllRegistrants, 0xB, 0).Status);
    }

    [Fact]
    public void Preempting_the_holder_takes_its_reservation_and_unregisters_it_and_abort_names_it()
    {
        var s = HeldByA(ExclusiveAccessRegistrantsOnly);
        var o = s.Acquire(B, AcquireAction.PreemptAndAbort, false, WriteExclusive, 0xB, 0xA);
        Assert.Equal(NvmeStatus.Success, o.Status);
        Assert.Equal(B, o.State.Holder);
        Assert.Equal(WriteExclusive, o.State.Type);
        Assert.False(o.State.IsRegistrant(A));
        Assert.Equal([A], o.Preempted);
        Assert.Contains(new ReservationNotice(A, ReservationNoticeType.RegistrationPreempted), o.Notices);
        Assert.Equal(s.Generation + 1, o.State.Generation);
        Assert.Empty(s.Acquire(B, AcquireAction.Preempt, false, WriteExclusive, 0xB, 0xA).Preempted); // plain preempt aborts nothing
    }

    [Fact]
    public void Preempt_by_another_key_unregisters_without_touching_the_reservation_and_zero_or_unknown_keys_are_refused()
    {
        var s = HeldByA(WriteExclusive);
        s = Ok(s.Register(C, RegisterAction.Register, false, 0, 0xC, PtplChange.NoChange));
        var o = s.Acquire(B, AcquireAction.Preempt, false, WriteExclusive, 0xB, 0xC);
        Assert.Equal(NvmeStatus.Success, o.Status);
        Assert.Equal(A, o.State.Holder);
        Assert.False(o.State.IsRegistrant(C));
        Assert.Equal(NvmeStatus.InvalidField, s.Acquire(B, AcquireAction.Preempt, false, WriteExclusive, 0xB, 0).Status);
        Assert.Equal(NvmeStatus.ReservationConflict, s.Acquire(B, AcquireAction.Preempt, false, WriteExclusive, 0xB, 0x77).Status);
    }

    [Fact]
    public void Preempt_with_zero_key_under_all_registrants_leaves_only_the_issuer()
    {
        var s = HeldByA(ExclusiveAccessAllRegistrants);
        s = Ok(s.Register(C, RegisterAction.Register, false, 0, 0xC, PtplChange.NoChange));
        var o = s.Acquire(B, AcquireAction.Preempt, false, WriteExclusive, 0xB, 0);
        Assert.Equal(NvmeStatus.Success, o.Status);
        Assert.Equal([new Registrant(B, 0xB)], o.State.Registrants);
        Assert.Equal(WriteExclusive, o.State.Type);
        Assert.Equal(B, o.State.Holder);
    }

    [Fact]
    public void Preempting_the_holder_with_another_type_tells_the_remaining_registrants_it_was_released()
    {
        var s = Ok(HeldByA(WriteExclusiveRegistrantsOnly).Register(C, RegisterAction.Register, false, 0, 0xC, PtplChange.NoChange));
        var o = s.Acquire(C, AcquireAction.Preempt, false, ExclusiveAccess, 0xC, 0xA);
        Assert.Equal(NvmeStatus.Success, o.Status);
        Assert.Equal(C, o.State.Holder);
        Assert.Equal([new ReservationNotice(A, ReservationNoticeType.RegistrationPreempted), new ReservationNotice(B, ReservationNoticeType.ReservationReleased)], o.Notices);
    }

    [Fact]
    public void The_holder_preempting_itself_changes_the_type_and_tells_the_others()
    {
        var o = HeldByA(WriteExclusiveRegistrantsOnly).Acquire(A, AcquireAction.Preempt, false, ExclusiveAccess, 0xA, 0xA);
        Assert.Equal(NvmeStatus.Success, o.Status);
        Assert.Equal(ExclusiveAccess, o.State.Type);
        Assert.Equal([new ReservationNotice(B, ReservationNoticeType.ReservationReleased)], o.Notices);
    }

    // Release: (type held by A) -> whether B (a registrant, non-holder unless all-registrants) is told it was released.
    [Theory]
    [InlineData(WriteExclusive, false)]
    [InlineData(ExclusiveAccess, false)]
    [InlineData(WriteExclusiveRegistrantsOnly, true)]
    [InlineData(ExclusiveAccessRegistrantsOnly, true)]
    [InlineData(WriteExclusiveAllRegistrants, true)]
    [InlineData(ExclusiveAccessAllRegistrants, true)]
    public void Release_by_the_holder_ends_the_reservation(ReservationType type, bool othersTold)
    {
        var s = HeldByA(type);
        Assert.Equal(NvmeStatus.InvalidField, s.Release(A, ReleaseAction.Release, false, type == WriteExclusive ? ExclusiveAccess : WriteExclusive, 0xA).Status);
        Assert.Equal(NvmeStatus.ReservationConflict, s.Release(A, ReleaseAction.Release, false, type, 0xB).Status);
        Assert.Equal(NvmeStatus.ReservationConflict, s.Release(C, ReleaseAction.Release, false, type, 0).Status);
        var o = s.Release(A, ReleaseAction.Release, false, type, 0xA);
        Assert.Equal(NvmeStatus.Success, o.Status);
        Assert.Equal(ReservationType.None, o.State.Type);
        Assert.Equal(2, o.State.Registrants.Count);
        Assert.Equal(othersTold ? [new ReservationNotice(B, ReservationNoticeType.ReservationReleased)] : [], o.Notices);
        Assert.Equal(s.Generation, o.State.Generation); // release does not count
    }

    [Fact]
    public void Release_by_a_registrant_that_does_not_hold_changes_nothing()
    {
        var s = HeldByA(WriteExclusive);
        var o = s.Release(B, ReleaseAction.Release, false, WriteExclusive, 0xB);
        Assert.Equal(NvmeStatus.Success, o.Status);
        Assert.Same(s, o.State);
    }

    [Fact]
    public void Clear_removes_every_registration_and_tells_the_others_they_were_preempted()
    {
        var o = HeldByA(ExclusiveAccess).Release(B, ReleaseAction.Clear, false, WriteExclusive, 0xB);
        Assert.Equal(NvmeStatus.Success, o.Status);
        Assert.Empty(o.State.Registrants);
        Assert.Equal(ReservationType.None, o.State.Type);
        Assert.Equal([new ReservationNotice(A, ReservationNoticeType.ReservationPreempted)], o.Notices);
        Assert.Equal(NvmeStatus.InvalidField, HeldByA(ExclusiveAccess).Release(B, ReleaseAction.Clear, true, WriteExclusive, 0xB).Status);
    }

    [Theory]
    [InlineData(WriteExclusiveRegistrantsOnly, true, false)]
    [InlineData(WriteExclusive, false, false)]
    [InlineData(WriteExclusiveAllRegistrants, false, true)]
    public void The_holder_unregistering_releases_except_under_all_registrants(ReservationType type, bool othersTold, bool stillHeld)
    {
        var o = HeldByA(type).Register(A, RegisterAction.Unregister, false, 0xA, 0, PtplChange.NoChange);
        Assert.Equal(NvmeStatus.Success, o.Status);
        Assert.Equal(stillHeld ? type : ReservationType.None, o.State.Type);
        Assert.Equal(stillHeld, o.State.IsHolder(B));
        Assert.Equal(othersTold ? [new ReservationNotice(B, ReservationNoticeType.ReservationReleased)] : [], o.Notices);
        // The last registrant leaving ends an all-registrants reservation.
        if (stillHeld) Assert.Equal(ReservationType.None, o.State.Register(B, RegisterAction.Unregister, false, 0xB, 0, PtplChange.NoChange).State.Type);
    }

    [Fact]
    public void A_restart_keeps_everything_with_ptpl_and_nothing_without()
    {
        var held = HeldByA(ExclusiveAccess);
        Assert.Same(ReservationState.Empty, held.AfterPowerLoss());
        var persistent = held.Register(B, RegisterAction.Register, false, 0, 0xB, PtplChange.Set).State;
        var restored = ReservationCodec.Deserialize(ReservationCodec.Serialize(persistent)).AfterPowerLoss();
        Assert.Equal(persistent.Registrants, restored.Registrants);
        Assert.Equal((persistent.Holder, persistent.Type, persistent.Ptpl, persistent.Generation), (restored.Holder, restored.Type, restored.Ptpl, restored.Generation));
        Assert.Throws<FormatException>(() => ReservationCodec.Deserialize(new byte[10]));
    }

    [Fact]
    public void Report_is_the_extended_structure_with_128_bit_host_ids_and_a_cut_copy_when_short()
    {
        var s = HeldByA(WriteExclusive).Register(B, RegisterAction.Register, false, 0, 0xB, PtplChange.Set).State;
        var page = new byte[ReservationCodec.ReportLength(s)];
        ReservationCodec.WriteReport(s, page);
        Assert.Equal(3 * 64, page.Length);
        Assert.Equal(s.Generation, BinaryPrimitives.ReadUInt32LittleEndian(page));
        Assert.Equal((byte)WriteExclusive, page[4]);
        Assert.Equal(2, BinaryPrimitives.ReadUInt16LittleEndian(page.AsSpan(5)));
        Assert.Equal(1, page[9]);
        Assert.Equal(0xFFFF, BinaryPrimitives.ReadUInt16LittleEndian(page.AsSpan(64)));
        Assert.Equal(1, page[64 + 2]);                                   // A holds it
        Assert.Equal(0xAul, BinaryPrimitives.ReadUInt64LittleEndian(page.AsSpan(64 + 8)));
        Assert.Equal(A, BinaryPrimitives.ReadUInt128LittleEndian(page.AsSpan(64 + 16)));
        Assert.Equal(0, page[128 + 2]);
        Assert.Equal(B, BinaryPrimitives.ReadUInt128LittleEndian(page.AsSpan(128 + 16)));
        var cut = new byte[100];
        ReservationCodec.WriteReport(s, cut);
        Assert.Equal(page.AsSpan(0, 100).ToArray(), cut);
    }

    private static string Name(NvmeStatus status) =>
        status == NvmeStatus.Success ? "ok" : status == NvmeStatus.ReservationConflict ? "conflict" : status == NvmeStatus.InvalidField ? "invalid" : status.ToString();

    // ---- The property: random commands from three hosts, the model against the reference reading of 8.19. ----

    private sealed record Command(int Kind, int Host, int Action, bool Iekey, int Type, ulong Key1, ulong Key2, int Ptpl);

    private static readonly UInt128[] Hosts = [A, B, C];

    private static Gen<Command> Commands =>
        from kind in Gen.Frequency((3, Gen.Constant(0)), (3, Gen.Constant(1)), (1, Gen.Constant(2))) // Clear wipes all: rarer
        from host in Gen.Choose(0, 2)
        from action in Gen.Frequency((10, Gen.Choose(0, 2)), (1, Gen.Choose(3, 7)))
        from iekey in Gen.Frequency((5, Gen.Constant(false)), (1, Gen.Constant(true)))
        from type in Gen.Frequency((8, Gen.Choose(1, 6)), (1, Gen.Elements(0, 7)))
        // Mostly each host's own key (its index), so that key checks pass often enough to reach the deep transitions.
        from key1 in Gen.Frequency((4, Gen.Constant(host)), (1, Gen.Choose(0, 2)))
        from key2 in Gen.Frequency((2, Gen.Constant(host)), (2, Gen.Choose(0, 2)))
        from ptpl in Gen.Frequency((8, Gen.Elements(0, 2, 3)), (1, Gen.Constant(1)))
        select new Command(kind, host, action, iekey, type, (ulong)key1, (ulong)key2, ptpl);

    [Property(MaxTest = 1000)]
    public Property Random_command_sequences_agree_with_the_reference_model() =>
        Prop.ForAll((from n in Gen.Choose(0, 40) from l in Gen.ArrayOf(Commands, n) select l).ToArbitrary(), (Command[] commands) =>
        {
            var model = ReservationState.Empty;
            var reference = ReservationReference.Empty;
            foreach (var c in commands)
            {
                var host = Hosts[c.Host];
                string expected;
                List<ReservationNotice> expectedNotices;
                List<UInt128> expectedPreempted = [];
                ReservationOutcome actual;
                switch (c.Kind)
                {
                    case 0:
                        var unchanged = reference;
                        (expected, reference, expectedNotices) = reference.Register(host, (RegisterAction)c.Action, c.Iekey, c.Key1, c.Key2, (PtplChange)c.Ptpl);
                        if ((RegisterAction)c.Action > RegisterAction.Replace) (expected, reference, expectedNotices) = ("invalid", unchanged, []);
                        actual = model.Register(host, (RegisterAction)c.Action, c.Iekey, c.Key1, c.Key2, (PtplChange)c.Ptpl);
                        break;
                    case 1:
                        var before = reference;
                        (expected, reference, expectedNotices, expectedPreempted) = reference.Acquire(host, (AcquireAction)c.Action, c.Iekey, (ReservationType)c.Type, c.Key1, c.Key2);
                        if ((AcquireAction)c.Action > AcquireAction.PreemptAndAbort) (expected, reference, expectedNotices, expectedPreempted) = ("invalid", before, [], []);
                        actual = model.Acquire(host, (AcquireAction)c.Action, c.Iekey, (ReservationType)c.Type, c.Key1, c.Key2);
                        break;
                    default:
                        var prior = reference;
                        (expected, reference, expectedNotices) = reference.Release(host, (ReleaseAction)c.Action, c.Iekey, (ReservationType)c.Type, c.Key1);
                        if ((ReleaseAction)c.Action > ReleaseAction.Clear) (expected, reference, expectedNotices) = ("invalid", prior, []);
                        actual = model.Release(host, (ReleaseAction)c.Action, c.Iekey, (ReservationType)c.Type, c.Key1);
                        break;
                }
                model = actual.State;
                if (Name(actual.Status) != expected) return false.Label($"{c}: status {Name(actual.Status)}, reference {expected}");
                if (!actual.Notices.OrderBy(n => n.Host).ThenBy(n => n.Type).SequenceEqual(expectedNotices.OrderBy(n => n.Host).ThenBy(n => n.Type)))
                    return false.Label($"{c}: notices [{string.Join(",", actual.Notices)}], reference [{string.Join(",", expectedNotices)}]");
                if (!actual.Preempted.Order().SequenceEqual(expectedPreempted.Order())) return false.Label($"{c}: preempted differ");
                if (Same(model, reference) is { } difference) return false.Label($"{c}: {difference}");
            }
            return true.ToProperty();
        });

    /// <summary>The observable state: registrants in order, type, holders, PTPL, generation, I/O permissions, holder a registrant.</summary>
    private static string? Same(ReservationState model, ReservationReference reference)
    {
        if (!model.Registrants.Select(r => (r.Host, r.Key)).SequenceEqual(reference.Regs)) return "registrants differ";
        if (model.Type != reference.Type) return $"type {model.Type} vs {reference.Type}";
        if (model.Ptpl != reference.Ptpl || model.Generation != reference.Gen) return "ptpl or generation differ";
        foreach (var h in Hosts)
        {
            if (model.IsHolder(h) != reference.Holders.Contains(h)) return $"holder {h} differs";
            foreach (var access in (ReservationAccess[])[ReservationAccess.Read, ReservationAccess.Write])
                if (model.Permits(h, access) != reference.Permits(h, access)) return $"{access} by {h} differs";
        }
        if (model.Type != ReservationType.None && !model.IsRegistrant(model.Holder!.Value)) return "holder is not a registrant";
        var restored = ReservationCodec.Deserialize(ReservationCodec.Serialize(model));
        return restored.Registrants.SequenceEqual(model.Registrants) && restored.Holder == model.Holder && restored.Type == model.Type ? null : "codec round trip differs";
    }
}
