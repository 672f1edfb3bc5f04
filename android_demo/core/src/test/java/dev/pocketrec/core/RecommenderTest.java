package dev.pocketrec.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.math.BigInteger;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.logging.Handler;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import org.junit.Test;
import org.junit.function.ThrowingRunnable;

/** Request handling of the recommender, on the tiny bundle's tables with a fake model. */
public class RecommenderTest {

  private static final Bundle TINY = Bundle.open(TestResources.tinyBundle());

  private static Recommender tiny(Fakes.Model model) {
    return Recommender.fromBundle(TINY, model);
  }

  @Test
  public void historyEntriesMustBeIds() {
    Recommender rec = tiny(new Fakes.Model(8));
    Object[] bad = {true, null, 2.0, Arrays.asList("x")};
    for (Object entry : bad) {
      List<Object> history = Arrays.asList("item1", entry);
      InvalidRequestException e =
          assertThrows(InvalidRequestException.class, () -> rec.recommend(history, 3));
      assertTrue(e.getMessage(), e.getMessage().startsWith("history[1] is "));
    }
    assertThrows(InvalidRequestException.class, () -> rec.recommend(null, 3));
  }

  @Test
  public void integerIdsAreLookedUpAsStrings() {
    List<String> ids = new ArrayList<>();
    for (int i = 0; i < 40; i++) {
      ids.add(String.valueOf(1000 + i));
    }
    Catalog numeric = Catalog.of(ids, TINY.catalog().popularity());
    Recommender rec =
        Recommender.builder(numeric, TINY.semanticIds(), new Fakes.Model(8))
            .bundleName("numeric")
            .window(5)
            .codebookSize(8)
            .build();
    List<Recommendation> byString = rec.recommend(Arrays.asList("1003", "1010", "1020"), 5);
    List<Object> numbers = Arrays.asList(1003, 1010L, BigInteger.valueOf(1020));
    assertEquals(ids(byString), ids(rec.recommend(numbers, 5)));
  }

  @Test
  public void requestArgumentsAreChecked() {
    Recommender rec = tiny(new Fakes.Model(8));
    List<String> history = Collections.singletonList("item3");
    assertMessage(
        "k must be an integer in [1, 40] (the catalogue size), got 0",
        () -> rec.recommend(history, 0));
    assertMessage("got 41", () -> rec.recommend(history, 41));
    assertMessage(
        "beam_width must be a positive integer, got 0",
        () -> rec.recommend(history, 3, true, UnknownPolicy.DROP, 0));
    assertMessage("unknown must be", () -> rec.recommend(history, 3, true, null, null));
    assertMessage(
        "unknown must be 'drop' or 'raise', got 'ignore'", () -> UnknownPolicy.parse("ignore"));
  }

  @Test
  public void unknownIdsAreDroppedOrRefused() {
    Recommender rec = tiny(new Fakes.Model(8));
    List<String> withUnknown = Arrays.asList("nope", "item3", "gone");
    List<String> warnings = new ArrayList<>();
    Handler capture =
        new Handler() {
          @Override
          public void publish(LogRecord record) {
            warnings.add(record.getLevel() + " " + record.getMessage());
          }

          @Override
          public void flush() {}

          @Override
          public void close() {}
        };
    Logger log = Logger.getLogger(Recommender.class.getName());
    log.addHandler(capture);
    try {
      assertEquals(
          ids(rec.recommend(Arrays.asList("item3"), 5)), ids(rec.recommend(withUnknown, 5)));
    } finally {
      log.removeHandler(capture);
    }
    assertEquals(
        Collections.singletonList(
            "WARNING dropped 2 history items not in the catalogue (first: 'nope'); pass "
                + "UnknownPolicy.RAISE to fail instead"),
        warnings);
    UnknownItemException e =
        assertThrows(
            UnknownItemException.class,
            () -> rec.recommend(withUnknown, 5, true, UnknownPolicy.RAISE, null));
    assertEquals(Arrays.asList("nope", "gone"), e.items());
    assertTrue(
        e.getMessage(),
        e.getMessage().startsWith("2 history items are not in the catalogue: 'nope', 'gone'."));
  }

  @Test
  public void onlyTheMostRecentWindowIsRead() {
    Recommender rec = tiny(new Fakes.Model(8));
    List<String> longHistory = new ArrayList<>();
    for (int i = 0; i < 12; i++) {
      longHistory.add("item" + i);
    }
    List<String> lastFive = ids(keepHistory(rec, longHistory.subList(7, 12)));
    assertEquals(lastFive, ids(keepHistory(rec, longHistory)));
    assertNotEquals(lastFive, ids(keepHistory(rec, longHistory.subList(0, 5))));
  }

  @Test
  public void historyItemsAreExcludedOnRequest() {
    Recommender rec = tiny(new Fakes.Model(8));
    // The items the model likes most for this history, then used as the history itself.
    List<String> history = ids(keepHistory(rec, Arrays.asList("item1", "item2")).subList(0, 8));
    List<String> excluded = ids(rec.recommend(history, 10));
    assertEquals(10, excluded.size());
    for (String id : history) {
      assertFalse(id + " was in the history", excluded.contains(id));
    }
    List<String> rest = ids(keepHistory(rec, history));
    rest.removeAll(history);
    assertEquals("the best items outside the history", rest.subList(0, 10), excluded);
  }

  @Test
  public void aHistoryThatCrowdsOutTheBeamsStillGetsAFullList() {
    Recommender rec = tiny(new Fakes.Model(8));
    List<String> all = rec.catalog().itemIds();
    List<String> history = all.subList(3, all.size()); // more than the capped extra beams
    List<Recommendation> got =
        rec.recommend(history, 3, true, UnknownPolicy.DROP, 1);
    List<String> ids = ids(got);
    Collections.sort(ids);
    List<String> left = new ArrayList<>(all.subList(0, 3));
    Collections.sort(left);
    assertEquals(left, ids);
  }

  @Test
  public void coldStartRanksByPopularity() {
    Fakes.Model model = new Fakes.Model(8);
    List<Recommendation> top = tiny(model).recommend(Arrays.asList("unknown"), 4);
    assertTrue("no model call for an empty history", model.encoderRows.isEmpty());
    // Rows 1, 2 and 3 have 4 training interactions, row 0 and most others 3.
    assertEquals(Arrays.asList("item7", "item14", "item21", "item0"), ids(top));
    double total = 0;
    for (double p : TINY.catalog().popularity()) {
      total += p + 1e-9;
    }
    assertEquals(Math.log((4 + 1e-9) / total), top.get(0).logProb(), 1e-12);
    assertArrayEquals(TINY.semanticIds()[1], top.get(0).semanticId());
    assertEquals("Item 7 perfume", top.get(0).metadata().get("title"));
    List<Recommendation> empty = tiny(model).recommend(Collections.emptyList(), 4);
    assertEquals("an empty history is a cold start too", ids(top), ids(empty));
    assertTrue(model.encoderRows.isEmpty());
  }

  @Test
  public void staticBatchesArePaddedAndChunkedWithoutChangingResults() {
    Fakes.Model dynamic = new Fakes.Model(8);
    Fakes.Model fixed = new Fakes.Model(8);
    Recommender chunked =
        Recommender.builder(TINY.catalog(), TINY.semanticIds(), fixed)
            .bundleName(TINY.manifest().name())
            .window(5)
            .codebookSize(8)
            .defaultBeamWidth(20)
            .staticRows(4, 3)
            .build();
    List<String> history = Arrays.asList("item5", "item9", "item30");
    List<Recommendation> want = tiny(dynamic).recommend(history, 10);
    List<Recommendation> got = chunked.recommend(history, 10);
    assertEquals(ids(want), ids(got));
    for (int j = 0; j < want.size(); j++) {
      assertEquals(want.get(j).logProb(), got.get(j).logProb(), 0.0);
    }
    assertEquals(Collections.singletonList(4), fixed.encoderRows);
    int call = 0;
    for (long[][] beams : dynamic.decoderPrefixes) {
      for (int start = 0; start < beams.length; start += 3, call++) {
        assertEquals(3, (int) fixed.decoderRows.get(call));
        long[][] chunk = fixed.decoderPrefixes.get(call);
        for (int r = 0; r < 3; r++) { // rows past the last beam repeat the last beam
          assertArrayEquals(beams[Math.min(start + r, beams.length - 1)], chunk[r]);
        }
      }
    }
    assertEquals("ceil(beams / 3) calls per level", call, fixed.decoderRows.size());
    for (int users : fixed.decoderUsers) { // the encoder's fixed batch of (the same) users
      assertEquals(4, users);
    }
  }

  @Test
  public void timingListenerSeesEveryStage() {
    List<String> stages = new ArrayList<>();
    Recommender rec =
        tiny(new Fakes.Model(8))
            .withTimingListener(
                (stage, nanos) -> {
                  assertTrue(nanos >= 0);
                  stages.add(stage);
                });
    rec.recommend(Arrays.asList("item1"), 5);
    assertEquals(
        Arrays.asList("encode", "decode_level_0", "decode_level_1", "decode_level_2"), stages);
  }

  @Test
  public void adaptersReorderButNeverInventItems() {
    Recommender rec = tiny(new Fakes.Model(8));
    List<String> history = Arrays.asList("item1", "item2");
    List<Recommendation> plain = rec.recommend(history, 10);
    Recommendation tenth = plain.get(9);
    CodeBiasAdapter boost =
        CodeBiasAdapter.zeros(rec.bundleName(), 3, 8).withBoost(tenth.semanticId(), 30f);
    List<Recommendation> boosted = withAdapter(rec, boost).recommend(history, 10);
    assertEquals(tenth.itemId(), boosted.get(0).itemId());
    assertTrue(boosted.get(0).logProb() > tenth.logProb());
    // Huge biases on every code, continuing a prefix or not: results are still catalogue items.
    float[][] wild = new float[3][8];
    for (int l = 0; l < 3; l++) {
      for (int c = 0; c < 8; c++) {
        wild[l][c] = (c * 37 + l * 11) % 8 * 1e4f;
      }
    }
    Recommender adapted = withAdapter(rec, new CodeBiasAdapter(rec.bundleName(), wild));
    List<Recommendation> all = keepHistory(adapted, history);
    assertEquals(40, all.size());
    for (Recommendation r : all) {
      int row = TINY.catalog().rowOf(r.itemId());
      assertArrayEquals(TINY.semanticIds()[row], r.semanticId());
      assertTrue(r.logProb() <= 0);
    }
    assertEquals(ids(plain), ids(adapted.withoutAdapters().recommend(history, 10)));
  }

  @Test
  public void adaptersAddUp() {
    Recommender rec = tiny(new Fakes.Model(8));
    List<String> history = Arrays.asList("item1", "item2");
    int[] target = rec.recommend(history, 10).get(9).semanticId();
    CodeBiasAdapter half = CodeBiasAdapter.zeros(rec.bundleName(), 3, 8).withBoost(target, 15f);
    Recommender twice = withAdapter(withAdapter(rec, half), half);
    Recommender once = withAdapter(rec, half.withBoost(target, 15f));
    assertEquals(2, twice.adapters().size());
    List<Recommendation> a = twice.recommend(history, 10);
    List<Recommendation> b = once.recommend(history, 10);
    assertEquals(ids(b), ids(a));
    for (int j = 0; j < a.size(); j++) {
      assertEquals(b.get(j).logProb(), a.get(j).logProb(), 0.0);
    }
  }

  @Test
  public void adaptersMustFitTheBundle() {
    Recommender rec = tiny(new Fakes.Model(8));
    CodeBiasAdapter other = CodeBiasAdapter.zeros("other-bundle", 3, 8);
    InvalidRequestException e =
        assertThrows(InvalidRequestException.class, () -> withAdapter(rec, other));
    assertEquals(
        "adapter for bundle 'other-bundle' with shape [3, 8] does not fit bundle "
            + "'tiny_shop-student-seed0-fp32' ([3, 8]); fit it on this bundle",
        e.getMessage());
    CodeBiasAdapter twoLevels = CodeBiasAdapter.zeros(rec.bundleName(), 2, 8);
    assertThrows(InvalidRequestException.class, () -> withAdapter(rec, twoLevels));
    assertTrue(rec.adapters().isEmpty());
  }

  @Test
  public void resultsAreReadOnly() {
    List<Recommendation> got = tiny(new Fakes.Model(8)).recommend(Arrays.asList("item1"), 3);
    assertThrows(UnsupportedOperationException.class, () -> got.remove(0));
  }

  /** Every item, for a history, without excluding the history. */
  private static List<Recommendation> keepHistory(Recommender rec, List<String> history) {
    return rec.recommend(history, 40, false, UnknownPolicy.DROP, null);
  }

  private static Recommender withAdapter(Recommender rec, CodeBiasAdapter adapter) {
    return rec.withAdapters(Collections.singletonList(adapter));
  }

  private static List<String> ids(List<Recommendation> recs) {
    List<String> out = new ArrayList<>();
    for (Recommendation r : recs) {
      out.add(r.itemId());
    }
    return out;
  }

  private static void assertMessage(String fragment, ThrowingRunnable call) {
    InvalidRequestException e = assertThrows(InvalidRequestException.class, call);
    assertTrue(e.getMessage(), e.getMessage().contains(fragment));
  }
}
