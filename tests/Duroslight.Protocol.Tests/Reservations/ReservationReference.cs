using Duroslight.Protocol.Reservations;

namespace Duroslight.Protocol.Tests.Reservations;

/// <summary>
/// A second, deliberately plain reading of NVMe Base 2.0 section 8.19 for the property test: registrations as a list of
/// (host, key) pairs, the reservation as (type, set of holders), one method per command with the rules written out in
/// the spec's order. Status codes as strings: "ok", "conflict", "invalid".
/// </summary>
internal sealed record ReservationReference(List<(UInt128 Host, ulong Key)> Regs, ReservationType Type, UInt128? Acquirer, bool Ptpl, uint Gen)
{
    public static ReservationReference Empty => new([], ReservationType.None, null, false, 0);

    private bool AllRegs => Type is ReservationType.WriteExclusiveAllRegistrants or ReservationType.ExclusiveAccessAllRegistrants;

    public HashSet<UInt128> Holders =>
        Type == ReservationType.None ? [] : AllRegs ? [.. Regs.Select(r => r.Host)] : [Acquirer!.Value];

    public ulong? KeyOf(UInt128 host) => Regs.Any(r => r.Host == host) ? Regs.First(r => r.Host == host).Key : null;

    /// <summary>8.19 figure "Command Behavior in the Presence of a Reservation", row by row.</summary>
    public bool Permits(UInt128 host, ReservationAccess access)
    {
        if (Type == ReservationType.None || Holders.Contains(host)) return true;
        bool registrant = KeyOf(host) is not null;
        bool write = access == ReservationAccess.Write;
        return (Type, registrant, write) switch
        {
            (ReservationType.WriteExclusive, _, false) => true,
            (ReservationType.WriteExclusive, _, true) => false,
            (ReservationType.ExclusiveAccess, _, _) => false,
            (ReservationType.WriteExclusiveRegistrantsOnly or ReservationType.WriteExclusiveAllRegistrants, true, _) => true,
            (ReservationType.WriteExclusiveRegistrantsOnly or ReservationType.WriteExclusiveAllRegistrants, false, var w) => !w,
            (_, var r, _) => r,
        };
    }

    public (string Status, ReservationReference Next, List<ReservationNotice> Notices) Register(UInt128 host, RegisterAction action, bool iekey, ulong crkey, ulong nrkey, PtplChange cptpl)
    {
        var notices = new List<ReservationNotice>();
        if (cptpl == PtplChange.Reserved) return ("invalid", this, notices);
        ulong? key = KeyOf(host);
        ReservationReference next;
        if (action == RegisterAction.Register)
        {
            if (key is not null && key != nrkey) return ("conflict", this, notices);
            next = key is null ? this with { Regs = [.. Regs, (host, nrkey)] } : this;
        }
        else if (action == RegisterAction.Replace)
        {
            if (key is null && !iekey) return ("conflict", this, notices);
            if (key is not null && !iekey && key != crkey) return ("conflict", this, notices);
            next = key is null
                ? this with { Regs = [.. Regs, (host, nrkey)] }
                : this with { Regs = Regs.Select(r => r.Host == host ? (host, nrkey) : r).ToList() };
        }
        else
        {
            if (key is null || (!iekey && key != crkey)) return ("conflict", this, notices);
            next = Drop(host, notices);
        }
        return ("ok", next with { Ptpl = cptpl == PtplChange.Set || (cptpl != PtplChange.Clear && next.Ptpl), Gen = next.Gen + 1 }, notices);
    }

    public (string Status, ReservationReference Next, List<ReservationNotice> Notices, List<UInt128> Preempted) Acquire(UInt128 host, AcquireAction action, bool iekey, ReservationType type, ulong crkey, ulong prkey)
    {
        var notices = new List<ReservationNotice>();
        var preempted = new List<UInt128>();
        if (iekey || type is ReservationType.None or > ReservationType.ExclusiveAccessAllRegistrants) return ("invalid", this, notices, preempted);
        if (KeyOf(host) != crkey) return ("conflict", this, notices, preempted);
        if (action == AcquireAction.Acquire)
        {
            if (Type == ReservationType.None) return ("ok", this with { Type = type, Acquirer = host }, notices, preempted);
            return (Holders.Contains(host) && Type == type ? "ok" : "conflict", this, notices, preempted);
        }
        ReservationReference next;
        bool holderKey = Type != ReservationType.None && !AllRegs && KeyOf(Acquirer!.Value) == prkey;
        if (Type != ReservationType.None && AllRegs && prkey == 0)
        {
            next = this with { Type = type, Acquirer = host };
            foreach (var r in Regs.Where(r => r.Host != host))
            {
                next = next with { Regs = next.Regs.Where(x => x.Host != r.Host).ToList() };
                preempted.Add(r.Host);
                notices.Add(new(r.Host, ReservationNoticeType.RegistrationPreempted));
            }
        }
        else if (Type != ReservationType.None && !AllRegs && Acquirer == host)
        {
            next = this with { Type = type };
            if (type != Type) notices.AddRange(Regs.Where(r => r.Host != host).Select(r => new ReservationNotice(r.Host, ReservationNoticeType.ReservationReleased)));
        }
        else if (holderKey)
        {
            next = this with { Type = type, Acquirer = host };
            foreach (var r in Regs.Where(r => r.Key == prkey && r.Host != host))
            {
                next = next with { Regs = next.Regs.Where(x => x.Host != r.Host).ToList() };
                preempted.Add(r.Host);
                notices.Add(new(r.Host, ReservationNoticeType.RegistrationPreempted));
            }
            if (type != Type) notices.AddRange(next.Regs.Where(r => r.Host != host).Select(r => new ReservationNotice(r.Host, ReservationNoticeType.ReservationReleased)));
        }
        else if (Type == ReservationType.None || prkey != 0)
        {
            next = this;
            foreach (var r in Regs.Where(r => r.Key == prkey))
            {
                preempted.Add(r.Host);
                next = next.Drop(r.Host, r.Host == host ? [] : notices);
                if (r.Host != host) notices.Add(new(r.Host, ReservationNoticeType.RegistrationPreempted));
            }
            if (preempted.Count == 0) return ("conflict", this, [], []);
        }
        else
        {
            return ("invalid", this, notices, preempted);
        }
        return ("ok", next with { Gen = next.Gen + 1 }, notices, action == AcquireAction.PreemptAndAbort ? preempted : []);
    }

    public (string Status, ReservationReference Next, List<ReservationNotice> Notices) Release(UInt128 host, ReleaseAction action, bool iekey, ReservationType type, ulong crkey)
    {
        var notices = new List<ReservationNotice>();
        if (iekey) return ("invalid", this, notices);
        if (KeyOf(host) != crkey) return ("conflict", this, notices);
        if (action == ReleaseAction.Clear)
        {
            notices.AddRange(Regs.Where(r => r.Host != host).Select(r => new ReservationNotice(r.Host, ReservationNoticeType.ReservationPreempted)));
            return ("ok", new([], ReservationType.None, null, Ptpl, Gen + 1), notices);
        }
        if (!Holders.Contains(host)) return ("ok", this, notices);
        if (type != Type) return ("invalid", this, notices);
        if (Type is not (ReservationType.WriteExclusive or ReservationType.ExclusiveAccess))
            notices.AddRange(Regs.Where(r => r.Host != host).Select(r => new ReservationNotice(r.Host, ReservationNoticeType.ReservationReleased)));
        return ("ok", this with { Type = ReservationType.None, Acquirer = null }, notices);
    }

    /// <summary>A registration goes; the sole holder going releases (registrants-only types tell the rest); all-registrants end with the last.</summary>
    private ReservationReference Drop(UInt128 host, List<ReservationNotice> notices)
    {
        var rest = Regs.Where(r => r.Host != host).ToList();
        if (Type == ReservationType.None) return this with { Regs = rest };
        if (AllRegs)
            return rest.Count == 0 ? new(rest, ReservationType.None, null, Ptpl, Gen) : this with { Regs = rest, Acquirer = Acquirer == host ? rest[0].Host : Acquirer };
        if (Acquirer != host) return this with { Regs = rest };
        if (Type is ReservationType.WriteExclusiveRegistrantsOnly or ReservationType.ExclusiveAccessRegistrantsOnly)
            notices.AddRange(rest.Select(r => new ReservationNotice(r.Host, ReservationNoticeType.ReservationReleased)));
        return new(rest, ReservationType.None, null, Ptpl, Gen);
    }
}
