package dev.pocketrec.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.Test;

/**
 * Beam search against brute-force enumeration: with a beam as wide as the catalogue it is exact,
 * so it must return every item in the order of its full log-probability.
 */
public class BeamSearchTest {

  @Test
  public void wideBeamRanksEveryItemExactly() {
    Random random = new Random(3);
    for (int trial = 0; trial < 25; trial++) {
      int levels = 2 + random.nextInt(3);
      int k = 3 + random.nextInt(4);
      int n = Math.min(5 + random.nextInt(40), (int) Math.pow(k, levels));
      int[][] table = Fakes.uniqueSemanticIds(random, n, levels, k);
      PrefixIndex index = new PrefixIndex(table, k);
      double[] exact = bruteForceLogProbs(table, index, trial);
      BeamSearch.Result found =
          BeamSearch.search(Fakes.step(k, trial), index, n, n, null, 0);
      int[] want = order(exact, null);
      assertArrayEquals("trial " + trial, want, found.items());
      double total = 0;
      for (int j = 0; j < n; j++) {
        int item = found.items()[j];
        assertEquals(exact[item], found.logProbs()[j], 0.0);
        assertArrayEquals(table[item], found.semanticIds()[j]);
        total += Math.exp(found.logProbs()[j]);
      }
      assertEquals("the item distribution sums to 1", 1.0, total, 1e-12);
    }
  }

  @Test
  public void narrowBeamReturnsValidDistinctItemsWithTheirExactScores() {
    Random random = new Random(11);
    for (int trial = 0; trial < 25; trial++) {
      int[][] table = Fakes.uniqueSemanticIds(random, 60, 3, 5);
      PrefixIndex index = new PrefixIndex(table, 5);
      double[] exact = bruteForceLogProbs(table, index, trial);
      int topK = 1 + random.nextInt(5);
      BeamSearch.Result found =
          BeamSearch.search(Fakes.step(5, trial), index, topK + random.nextInt(3), topK, null, 0);
      List<Integer> seen = new ArrayList<>();
      for (int j = 0; j < topK; j++) {
        int item = found.items()[j];
        assertTrue(item >= 0 && !seen.contains(item));
        seen.add(item);
        assertEquals(exact[item], found.logProbs()[j], 0.0);
        if (j > 0) {
          assertTrue(found.logProbs()[j - 1] >= found.logProbs()[j]);
        }
      }
    }
  }

  @Test
  public void excludedItemsNeverComeBackAndTheRestKeepTheirOrder() {
    Random random = new Random(5);
    for (int trial = 0; trial < 25; trial++) {
      int[][] table = Fakes.uniqueSemanticIds(random, 50, 3, 4);
      PrefixIndex index = new PrefixIndex(table, 4);
      double[] exact = bruteForceLogProbs(table, index, trial);
      int[] best = order(exact, null);
      int[] exclude = Arrays.copyOf(best, 1 + random.nextInt(8)); // the favourites, as a history
      Arrays.sort(exclude);
      BeamSearch.Result wide =
          BeamSearch.search(Fakes.step(4, trial), index, 50, 10, exclude, exclude.length);
      assertArrayEquals(Arrays.copyOf(order(exact, exclude), 10), wide.items());
      BeamSearch.Result narrow =
          BeamSearch.search(Fakes.step(4, trial), index, 10, 10, exclude, exclude.length);
      for (int item : narrow.items()) {
        assertTrue(item >= 0 && Arrays.binarySearch(exclude, item) < 0);
      }
    }
  }

  @Test
  public void tiesGoToTheLowerFlatIndex() {
    // Uniform logits: every prefix splits its probability evenly among its children.
    BeamSearch.Step uniform = (prefix, level) -> new float[prefix.length][2];
    PrefixIndex full = new PrefixIndex(new int[][] {{0, 1}, {1, 0}, {0, 0}, {1, 1}}, 2);
    BeamSearch.Result all = BeamSearch.search(uniform, full, 4, 4, null, 0);
    assertArrayEquals(new int[] {2, 0, 1, 3}, all.items()); // codes 00, 01, 10, 11
    double quarter = Math.log(0.5) + Math.log(0.5);
    assertArrayEquals(new double[] {quarter, quarter, quarter, quarter}, all.logProbs(), 0);
    // Prefix [0] has one child, so item 00 (probability 1/2) beats 10 and 11 (1/4 each).
    PrefixIndex uneven = new PrefixIndex(new int[][] {{1, 1}, {1, 0}, {0, 0}}, 2);
    assertArrayEquals(
        new int[] {2, 1, 0}, BeamSearch.search(uniform, uneven, 3, 3, null, 0).items());
  }

  @Test
  public void onlyValidPrefixesReachTheModel() {
    Random random = new Random(8);
    int[][] table = Fakes.uniqueSemanticIds(random, 12, 3, 4); // sparse: 12 of 64 IDs
    PrefixIndex index = new PrefixIndex(table, 4);
    List<Integer> widths = new ArrayList<>();
    BeamSearch.Step checking =
        (prefix, level) -> {
          widths.add(prefix.length);
          for (long[] row : prefix) {
            int[] codes = new int[level];
            for (int j = 0; j < level; j++) {
              codes[j] = (int) row[j];
            }
            int[] children = index.children(level, index.key(codes, level));
            assertTrue("a prefix no item continues", children.length > 0);
          }
          return Fakes.step(4, 2).logits(prefix, level);
        };
    BeamSearch.Result found = BeamSearch.search(checking, index, 20, 12, null, 0);
    int valid1 = 0; // distinct first codes: the beams of level 1
    for (int c = 0; c < 4; c++) {
      valid1 += index.children(1, c).length > 0 ? 1 : 0;
    }
    assertEquals(valid1, (int) widths.get(1));
    assertEquals(12, Arrays.stream(found.items()).filter(i -> i >= 0).count());
  }

  @Test
  public void beamsWithoutAFiniteScoreAreNotExpanded() {
    PrefixIndex index = new PrefixIndex(new int[][] {{0, 0}, {0, 1}, {1, 0}, {1, 1}}, 2);
    float ninf = Float.NEGATIVE_INFINITY;
    BeamSearch.Step step =
        (prefix, level) -> {
          float[][] out = new float[prefix.length][];
          for (int m = 0; m < prefix.length; m++) {
            out[m] = level == 0 ? new float[] {0f, ninf} : new float[] {1f, 0f};
          }
          return out;
        };
    BeamSearch.Result found = BeamSearch.search(step, index, 4, 4, null, 0);
    assertArrayEquals(new int[] {0, 1, -1, -1}, found.items()); // code 1 has probability 0
    assertEquals(Double.NEGATIVE_INFINITY, found.logProbs()[2], 0);
    assertArrayEquals(new int[] {-1, -1}, found.semanticIds()[2]);
  }

  @Test
  public void stepSeesEmptyCodesAndWiderBeamsBeforeTheLastLevel() {
    int[][] table = Fakes.uniqueSemanticIds(new Random(1), 80, 3, 6);
    PrefixIndex index = new PrefixIndex(table, 6);
    List<Integer> widths = new ArrayList<>();
    BeamSearch.Step checking =
        (prefix, level) -> {
          widths.add(prefix.length);
          for (long[] row : prefix) {
            assertEquals(2, row.length);
            for (int j = level; j < 2; j++) {
              assertEquals("unchosen codes are the empty code", 6, row[j]);
            }
          }
          return Fakes.step(6, 9).logits(prefix, level);
        };
    int[] exclude = {0, 1, 2};
    BeamSearch.Result found = BeamSearch.search(checking, index, 4, 4, exclude, 3);
    assertEquals(Arrays.asList(1, 6, 7), widths); // 1 beam, 6 first codes, then 4 + 3 kept
    assertEquals(4, found.items().length);
  }

  @Test
  public void padsWhenFewerItemsAreReachable() {
    PrefixIndex index = new PrefixIndex(new int[][] {{0, 0}, {0, 1}, {1, 1}}, 2);
    BeamSearch.Result found = BeamSearch.search(Fakes.step(2, 4), index, 6, 6, null, 0);
    int[] items = found.items();
    assertEquals(6, items.length);
    int[] sorted = Arrays.copyOf(items, 3);
    Arrays.sort(sorted);
    assertArrayEquals(new int[] {0, 1, 2}, sorted);
    for (int j = 3; j < 6; j++) {
      assertEquals(-1, items[j]);
      assertEquals(Double.NEGATIVE_INFINITY, found.logProbs()[j], 0);
      assertArrayEquals(new int[] {-1, -1}, found.semanticIds()[j]);
    }
  }

  @Test
  public void rejectsInvalidWidths() {
    PrefixIndex index = new PrefixIndex(new int[][] {{0}, {1}}, 2);
    BeamSearch.Step step = Fakes.step(2, 0);
    int[][] widths = {{2, 0, 0}, {1, 2, 0}, {2, 2, -1}}; // beam, top k, extra
    for (int[] w : widths) {
      assertThrows(
          IllegalArgumentException.class,
          () -> BeamSearch.search(step, index, w[0], w[1], null, w[2]));
    }
  }

  /** Every item's log-probability: the sum over levels of its code's masked log-softmax. */
  static double[] bruteForceLogProbs(int[][] table, PrefixIndex index, long seed) {
    int levels = index.numLevels();
    int k = index.codebookSize();
    double[] out = new double[table.length];
    for (int i = 0; i < table.length; i++) {
      double score = 0.0;
      for (int level = 0; level < levels; level++) {
        long[] prefix = new long[levels - 1];
        Arrays.fill(prefix, k);
        for (int j = 0; j < level; j++) {
          prefix[j] = table[i][j];
        }
        float[] logits = Fakes.logits(prefix, level, k, seed);
        int[] children = index.children(level, index.key(table[i], level));
        double[] logP = ChildLogSoftmax.apply(logits, children);
        score += logP[Arrays.binarySearch(children, table[i][level])];
      }
      out[i] = score;
    }
    return out;
  }

  /** Items by score, best first, ties by lower row; excluded rows left out. */
  static int[] order(double[] scores, int[] exclude) {
    List<Integer> rows = new ArrayList<>();
    for (int i = 0; i < scores.length; i++) {
      if (exclude == null || Arrays.binarySearch(exclude, i) < 0) {
        rows.add(i);
      }
    }
    rows.sort((a, b) -> scores[a] != scores[b] ? Double.compare(scores[b], scores[a]) : a - b);
    int[] out = new int[rows.size()];
    for (int i = 0; i < out.length; i++) {
      out[i] = rows.get(i);
    }
    return out;
  }
}
