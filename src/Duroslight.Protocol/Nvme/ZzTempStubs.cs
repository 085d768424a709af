// TEMPORARY: replaced by the storage branch at merge. Do not commit.
namespace Duroslight.Protocol.Subsystems
{
    public sealed class ControllerIdPool(int nodeIndex, int max)
    {
        private int _n = nodeIndex * max;
        public bool TryAllocate(out ushort id) { id = (ushort)++_n; return true; }
        public void Release(ushort id) { }
    }
}
