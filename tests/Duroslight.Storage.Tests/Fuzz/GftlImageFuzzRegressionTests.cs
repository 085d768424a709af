using System.Runtime.CompilerServices;
using Duroslight.Fuzz;

namespace Duroslight.Storage.Tests.Fuzz;

/// <summary>
/// The AFL++ GFTL image target (bench/fuzz) without AFL: the committed seeds are what <see cref="GftlSeeds"/> makes
/// today, and every seed and every input AFL++ found (bench/fuzz/regressions-gftl) starts, or is refused, cleanly.
/// </summary>
public class GftlImageFuzzRegressionTests
{
    private static string FuzzDir([CallerFilePath] string here = "") =>
        Path.GetFullPath(Path.Combine(Path.GetDirectoryName(here)!, "../../../bench/fuzz"));

    [Fact]
    public void Committed_seeds_match_what_the_seed_maker_writes()
    {
        string dir = Path.Combine(FuzzDir(), "corpus-gftl");
        var expected = GftlSeeds.All().ToList();
        Assert.Equal(expected.Select(s => s.Name).Order(StringComparer.Ordinal),
            Directory.GetFiles(dir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        foreach ((string name, byte[] input) in expected)
        {
            Assert.True(input.AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(dir, name))),
                $"bench/fuzz/corpus-gftl/{name} is stale: regenerate with `duroslight-fuzz seeds-gftl bench/fuzz/corpus-gftl`");
        }
    }

    public static TheoryData<string> Inputs()
    {
        var data = new TheoryData<string>();
        foreach (string sub in new[] { "corpus-gftl", "regressions-gftl" })
        {
            string dir = Path.Combine(FuzzDir(), sub);
            if (!Directory.Exists(dir)) continue;
            foreach (string f in Directory.GetFiles(dir).Order(StringComparer.Ordinal)) data.Add(sub + "/" + Path.GetFileName(f));
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void Input_starts_or_is_refused_cleanly(string relative) => GftlImage.Run(File.ReadAllBytes(Path.Combine(FuzzDir(), relative)));
}
