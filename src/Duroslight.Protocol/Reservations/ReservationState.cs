using Duroslight.Protocol.Nvme;

namespace Duroslight.Protocol.Reservations;

/// <summary>
/// What a reservation command did: its status, the namespace's state afterwards (the same object when refused),
/// the notifications to deliver and, for Preempt and Abort, the hosts whose outstanding commands are to be aborted.
/// </summary>
public sealed record ReservationOutcome(NvmeStatus Status, ReservationState State, ReservationNotice[] Notices, UInt128[] Preempted)
{
    public static ReservationOutcome Refused(ReservationState unchanged, NvmeStatus status) => new(status, unchanged, [], []);
}

/// <summary>
/// The reservation state of one namespace and the rules of NVMe Base 2.0, section 8.19 "Reservations" (and the
/// Reservation Register/Acquire/Release/Report commands of section 7), sans-IO: commands in, a new state, a status
/// and notifications out. Immutable, so the I/O path checks <see cref="Permits"/> on a published snapshot without a
/// lock or an allocation, while reservation commands (rare) build a new state under the caller's serialisation.
/// Registrations belong to hosts (the 128-bit Host Identifier), not controllers: every controller of a host shares
/// them (8.19, "a host ... registers ... on each controller" is one registrant per host ID).
/// </summary>
public sealed class ReservationState
{
    public static readonly ReservationState Empty = new([], null, ReservationType.None, ptpl: false, generation: 0);

    private readonly Registrant[] _registrants;

    private ReservationState(Registrant[] registrants, UInt128? holder, ReservationType type, bool ptpl, uint generation)
    {
        _registrants = registrants;
        Holder = type == ReservationType.None ? null : holder;
        Type = type;
        Ptpl = ptpl;
        Generation = generation;
    }

    /// <summary>Registrants in the order they registered.</summary>
    public IReadOnlyList<Registrant> Registrants => _registrants;

    /// <summary>
    /// The host that acquired the reservation (null when none). For the all-registrants types every registrant is a
    /// holder (8.19 "Reservation types"); this is then the one that acquired or last preempted it.
    /// </summary>
    public UInt128? Holder { get; }

    public ReservationType Type { get; }

    /// <summary>Persist Through Power Loss (8.19 "Persist Through Power Loss"): with it set the state survives a restart.</summary>
    public bool Ptpl { get; }

    /// <summary>The Report's GEN: a wrapping count of successful Register, Preempt (and Abort) and Clear commands.</summary>
    public uint Generation { get; }

    public bool IsAllRegistrants => Type is ReservationType.WriteExclusiveAllRegistrants or ReservationType.ExclusiveAccessAllRegistrants;

    public bool IsRegistrant(UInt128 host) => IndexOf(host) >= 0;

    /// <summary>Whether <paramref name="host"/> holds the reservation (any registrant does, for the all-registrants types).</summary>
    public bool IsHolder(UInt128 host) => Type != ReservationType.None && (IsAllRegistrants ? IsRegistrant(host) : Holder == host);

    /// <summary>
    /// Whether an I/O command of this kind from <paramref name="host"/> may run (8.19, figure "Command Behavior in the
    /// Presence of a Reservation"); false means Reservation Conflict. No allocation: the I/O path calls this.
    /// </summary>
    public bool Permits(UInt128 host, ReservationAccess access)
    {
        if (Type == ReservationType.None || IsHolder(host)) return true;
        return Type switch
        {
            ReservationType.WriteExclusive => access == ReservationAccess.Read,
            ReservationType.ExclusiveAccess => false,
            ReservationType.WriteExclusiveRegistrantsOnly or ReservationType.WriteExclusiveAllRegistrants =>
                access == ReservationAccess.Read || IsRegistrant(host),
            _ => IsRegistrant(host), // the exclusive-access registrants-only and all-registrants types
        };
    }

    /// <summary>
    /// Reservation Register (8.19 "Registering", "Unregistering"; section 7 Reservation Register). CRKEY is checked
    /// for Unregister and Replace unless IEKEY; a registered host registering again with its own key succeeds; Replace
    /// by a host not registered registers it when IEKEY is set. CPTPL applies when the command succeeds.
    /// </summary>
    public ReservationOutcome Register(UInt128 host, RegisterAction action, bool ignoreExistingKey, ulong currentKey, ulong newKey, PtplChange ptpl)
    {
        if (ptpl == PtplChange.Reserved || action > RegisterAction.Replace) return ReservationOutcome.Refused(this, NvmeStatus.InvalidField);
        int index = IndexOf(host);
        bool keyMatches = index >= 0 && (ignoreExistingKey || _registrants[index].Key == currentKey);
        var notices = new List<ReservationNotice>();
        ReservationState next;
        switch (action)
        {
            case RegisterAction.Register:
                if (index >= 0)
                {
                    if (_registrants[index].Key != newKey) return ReservationOutcome.Refused(this, NvmeStatus.ReservationConflict);
                    next = this;
                }
                else
                {
                    next = With([.. _registrants, new Registrant(host, newKey)]);
                }
                break;
            case RegisterAction.Unregister:
                if (!keyMatches) return ReservationOutcome.Refused(this, NvmeStatus.ReservationConflict);
                next = Unregister(host, notices);
                break;
            default: // Replace
                if (index < 0)
                {
                    if (!ignoreExistingKey) return ReservationOutcome.Refused(this, NvmeStatus.ReservationConflict);
                    next = With([.. _registrants, new Registrant(host, newKey)]);
                    break;
                }
                if (!keyMatches) return ReservationOutcome.Refused(this, NvmeStatus.ReservationConflict);
                var replaced = (Registrant[])_registrants.Clone();
                replaced[index] = new Registrant(host, newKey);
                next = With(replaced);
                break;
        }
        bool newPtpl = ptpl switch { PtplChange.Set => true, PtplChange.Clear => false, _ => next.Ptpl };
        return new(NvmeStatus.Success, next.Next(newPtpl, bumpGeneration: true), [.. notices], []);
    }

    /// <summary>
    /// Reservation Acquire (8.19 "Acquiring a Reservation", "Preempting a Reservation or Registration"). The host must be
    /// a registrant with a matching CRKEY; IEKEY is reserved for this command in 2.0 and refused as an invalid field.
    /// </summary>
    public ReservationOutcome Acquire(UInt128 host, AcquireAction action, bool ignoreExistingKey, ReservationType type, ulong currentKey, ulong preemptKey)
    {
        if (ignoreExistingKey || type is < ReservationType.WriteExclusive or > ReservationType.ExclusiveAccessAllRegistrants || action > AcquireAction.PreemptAndAbort)
            return ReservationOutcome.Refused(this, NvmeStatus.InvalidField);
        int index = IndexOf(host);
        if (index < 0 || _registrants[index].Key != currentKey) return ReservationOutcome.Refused(this, NvmeStatus.ReservationConflict);
        if (action == AcquireAction.Acquire)
        {
            if (Type == ReservationType.None) return new(NvmeStatus.Success, new ReservationState(_registrants, host, type, Ptpl, Generation), [], []);
            return IsHolder(host) && Type == type
                ? new(NvmeStatus.Success, this, [], [])
                : ReservationOutcome.Refused(this, NvmeStatus.ReservationConflict);
        }
        return Preempt(host, type, preemptKey, abort: action == AcquireAction.PreemptAndAbort);
    }

    /// <summary>
    /// Reservation Release (8.19 "Releasing a Reservation", "Clearing a Reservation"). The host must be a registrant with
    /// a matching CRKEY (IEKEY refused as for Acquire). Release by a non-holder succeeds and changes nothing; a holder
    /// giving another type than the reservation's gets Invalid Field. Releasing a type other than Write Exclusive and
    /// Exclusive Access tells the other registrants (Reservation Released); Clear removes every registration and tells
    /// the other registrants (Reservation Preempted).
    /// </summary>
    public ReservationOutcome Release(UInt128 host, ReleaseAction action, bool ignoreExistingKey, ReservationType type, ulong currentKey)
    {
        if (ignoreExistingKey || action > ReleaseAction.Clear) return ReservationOutcome.Refused(this, NvmeStatus.InvalidField);
        int index = IndexOf(host);
        if (index < 0 || _registrants[index].Key != currentKey) return ReservationOutcome.Refused(this, NvmeStatus.ReservationConflict);
        if (action == ReleaseAction.Clear)
        {
            var cleared = new List<ReservationNotice>();
            foreach (var r in _registrants)
                if (r.Host != host) cleared.Add(new ReservationNotice(r.Host, ReservationNoticeType.ReservationPreempted));
            return new(NvmeStatus.Success, new ReservationState([], null, ReservationType.None, Ptpl, Generation).Next(Ptpl, bumpGeneration: true), [.. cleared], []);
        }
        if (!IsHolder(host)) return new(NvmeStatus.Success, this, [], []);
        if (type != Type) return ReservationOutcome.Refused(this, NvmeStatus.InvalidField);
        var notices = new List<ReservationNotice>();
        if (Type is not (ReservationType.WriteExclusive or ReservationType.ExclusiveAccess)) NotifyOthers(host, ReservationNoticeType.ReservationReleased, notices, this);
        return new(NvmeStatus.Success, new ReservationState(_registrants, null, ReservationType.None, Ptpl, Generation), [.. notices], []);
    }

    /// <summary>
    /// The state a restart leaves (8.19 "Persist Through Power Loss"): all of it with PTPL set, otherwise no
    /// registrants and no reservation (PTPL stays clear).
    /// </summary>
    public ReservationState AfterPowerLoss() => Ptpl ? this : Empty;

    /// <summary>
    /// Set Features Reservation Persistence (83h): only PTPL changes (the generation counts registrations and
    /// preemptions, not this); setting it to what it is leaves the state as it is.
    /// </summary>
    public ReservationOutcome ChangePtpl(bool ptpl) =>
        new(NvmeStatus.Success, ptpl == Ptpl ? this : Next(ptpl, bumpGeneration: false), [], []);

    /// <summary>
    /// 8.19 "Preempting a Reservation or Registration". No reservation, or PRKEY another registrant's key: the registrants
    /// with that key are unregistered (none is a conflict). All-registrants type with PRKEY 0: the issuer takes a new
    /// reservation of RTYPE and every other registrant is unregistered. Otherwise, the holder preempting itself changes
    /// the type; PRKEY equal to the holder's key makes the issuer the holder with RTYPE and unregisters the other
    /// registrants with that key; PRKEY 0 is an invalid field.
    /// </summary>
    private ReservationOutcome Preempt(UInt128 host, ReservationType type, ulong preemptKey, bool abort)
    {
        var notices = new List<ReservationNotice>();
        var preempted = new List<UInt128>();
        ReservationState next;
        if (Type == ReservationType.None || (IsAllRegistrants && preemptKey != 0))
        {
            next = UnregisterByKey(host, preemptKey, includeIssuer: true, notices, preempted);
            if (preempted.Count == 0) return ReservationOutcome.Refused(this, NvmeStatus.ReservationConflict);
        }
        else if (IsAllRegistrants)
        {
            next = new ReservationState(_registrants, host, type, Ptpl, Generation);
            foreach (var r in _registrants)
            {
                if (r.Host == host) continue;
                next = next.Unregister(r.Host, null);
                preempted.Add(r.Host);
                notices.Add(new ReservationNotice(r.Host, ReservationNoticeType.RegistrationPreempted));
            }
        }
        else if (Holder == host)
        {
            next = new ReservationState(_registrants, host, type, Ptpl, Generation);
            if (type != Type) NotifyOthers(host, ReservationNoticeType.ReservationReleased, notices, this);
        }
        else if (preemptKey == KeyOf(Holder!.Value))
        {
            next = new ReservationState(_registrants, host, type, Ptpl, Generation)
                .UnregisterByKey(host, preemptKey, includeIssuer: false, notices, preempted);
            if (type != Type) NotifyOthers(host, ReservationNoticeType.ReservationReleased, notices, next);
        }
        else if (preemptKey != 0)
        {
            next = UnregisterByKey(host, preemptKey, includeIssuer: true, notices, preempted);
            if (preempted.Count == 0) return ReservationOutcome.Refused(this, NvmeStatus.ReservationConflict);
        }
        else
        {
            return ReservationOutcome.Refused(this, NvmeStatus.InvalidField);
        }
        return new(NvmeStatus.Success, next.Next(next.Ptpl, bumpGeneration: true), [.. notices], abort ? [.. preempted] : []);
    }

    /// <summary>Unregisters every registrant with <paramref name="key"/> (the issuer too unless excluded); the others are told.</summary>
    private ReservationState UnregisterByKey(UInt128 issuer, ulong key, bool includeIssuer, List<ReservationNotice> notices, List<UInt128> preempted)
    {
        var next = this;
        foreach (var r in _registrants)
        {
            if (r.Key != key || (r.Host == issuer && !includeIssuer)) continue;
            preempted.Add(r.Host);
            next = next.Unregister(r.Host, r.Host == issuer ? null : notices);
            if (r.Host != issuer) notices.Add(new ReservationNotice(r.Host, ReservationNoticeType.RegistrationPreempted));
        }
        return next;
    }

    /// <summary>
    /// Removes a registration. The holder leaving releases the reservation, except in the all-registrants types, which
    /// end with their last registrant; a registrants-only reservation ending so tells the others (Reservation Released).
    /// </summary>
    private ReservationState Unregister(UInt128 host, List<ReservationNotice>? notices)
    {
        var remaining = Array.FindAll(_registrants, r => r.Host != host);
        if (Type == ReservationType.None) return new ReservationState(remaining, null, ReservationType.None, Ptpl, Generation);
        if (IsAllRegistrants)
        {
            if (remaining.Length == 0) return new ReservationState(remaining, null, ReservationType.None, Ptpl, Generation);
            return new ReservationState(remaining, Holder == host ? remaining[0].Host : Holder, Type, Ptpl, Generation);
        }
        if (Holder != host) return new ReservationState(remaining, Holder, Type, Ptpl, Generation);
        var released = new ReservationState(remaining, null, ReservationType.None, Ptpl, Generation);
        if (notices is not null && Type is ReservationType.WriteExclusiveRegistrantsOnly or ReservationType.ExclusiveAccessRegistrantsOnly)
            NotifyOthers(host, ReservationNoticeType.ReservationReleased, notices, released);
        return released;
    }

    private static void NotifyOthers(UInt128 host, ReservationNoticeType type, List<ReservationNotice> notices, ReservationState registrantsOf)
    {
        foreach (var r in registrantsOf._registrants)
            if (r.Host != host) notices.Add(new ReservationNotice(r.Host, type));
    }

    private ReservationState With(Registrant[] registrants) => new(registrants, Holder, Type, Ptpl, Generation);

    private ReservationState Next(bool ptpl, bool bumpGeneration) =>
        new(_registrants, Holder, Type, ptpl, bumpGeneration ? unchecked(Generation + 1) : Generation);

    private int IndexOf(UInt128 host)
    {
        for (int i = 0; i < _registrants.Length; i++)
            if (_registrants[i].Host == host) return i;
        return -1;
    }

    private ulong KeyOf(UInt128 host) => _registrants[IndexOf(host)].Key;

    /// <summary>Rebuilds a state (PTPL persistence, <see cref="ReservationCodec"/>); the holder must be a registrant.</summary>
    internal static ReservationState Restore(Registrant[] registrants, UInt128? holder, ReservationType type, bool ptpl, uint generation)
    {
        if (type != ReservationType.None && (holder is null || Array.FindIndex(registrants, r => r.Host == holder) < 0))
            throw new FormatException("the reservation holder is not a registrant");
        return new ReservationState(registrants, holder, type, ptpl, generation);
    }
}
