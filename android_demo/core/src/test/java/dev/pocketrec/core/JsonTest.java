package dev.pocketrec.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.math.BigInteger;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.Test;

public class JsonTest {

  @Test
  public void parsesEveryValueType() {
    Map<String, Object> obj =
        GoldenTrace.map(
            Json.parse(
                "{\"s\": \"a\\\"b\\\\c\\n\\u00e9\\ud83d\\ude00\", \"i\": -42, \"f\": 2.5e-3,"
                    + " \"t\": true, \"n\": null, \"l\": [1, [2, {}], []], \"e\": {}}"));
    assertEquals("a\"b\\c\né\uD83D\uDE00", obj.get("s"));
    assertEquals(-42L, obj.get("i"));
    assertEquals(0.0025, obj.get("f"));
    assertEquals(Boolean.TRUE, obj.get("t"));
    assertTrue(obj.containsKey("n"));
    assertNull(obj.get("n"));
    assertEquals(
        Arrays.asList(1L, Arrays.asList(2L, new LinkedHashMap<>()), Arrays.asList()), obj.get("l"));
    assertEquals(new LinkedHashMap<>(), obj.get("e"));
  }

  @Test
  public void keepsIntegersApartFromFloats() {
    assertEquals(2L, Json.parse("2"));
    assertEquals(2.0, Json.parse("2.0"));
    assertEquals(200.0, Json.parse("2E2"));
    assertEquals(Long.MAX_VALUE, Json.parse("9223372036854775807"));
    assertEquals(new BigInteger("9223372036854775808"), Json.parse("9223372036854775808"));
    assertEquals(Long.MIN_VALUE, Json.parse("-9223372036854775808"));
  }

  @Test
  public void keepsKeyOrder() {
    Map<String, Object> obj = GoldenTrace.map(Json.parse("{\"z\": 1, \"a\": 2, \"m\": 3}"));
    assertEquals(Arrays.asList("z", "a", "m"), Arrays.asList(obj.keySet().toArray()));
  }

  @Test
  public void acceptsPythonNonFiniteFloats() {
    List<Object> values = GoldenTrace.list(Json.parse("[NaN, Infinity, -Infinity]"));
    assertTrue(Double.isNaN((Double) values.get(0)));
    assertEquals(Double.POSITIVE_INFINITY, values.get(1));
    assertEquals(Double.NEGATIVE_INFINITY, values.get(2));
  }

  @Test
  public void rejectsMalformedInputWithPosition() {
    String[] bad = {
      "", "{", "[1,]", "{\"a\" 1}", "{\"a\": 1,}", "\"open", "01", "1.", "-", "tru", "[1] 2",
      "{1: 2}", "\"tab\there\"", "\"\\x\"", "1e"
    };
    for (String text : bad) {
      IllegalArgumentException e =
          assertThrows(text, IllegalArgumentException.class, () -> Json.parse(text));
      assertTrue(e.getMessage(), e.getMessage().startsWith("invalid JSON at line 1, column "));
    }
    IllegalArgumentException e =
        assertThrows(IllegalArgumentException.class, () -> Json.parse("{\n  \"a\": x\n}"));
    assertEquals(
        "invalid JSON at line 2, column 8: unexpected character 'x', expected a value",
        e.getMessage());
  }

  @Test
  public void writesCompactAndPrettyJsonThatParsesBack() {
    Map<String, Object> obj = new LinkedHashMap<>();
    obj.put("name", "q\"uote\\ \u0001");
    obj.put("n", 3);
    obj.put("x", 0.5);
    obj.put("list", Arrays.asList(1L, null, true));
    obj.put("empty", new LinkedHashMap<>());
    assertEquals(
        "{\"name\":\"q\\\"uote\\\\ \\u0001\",\"n\":3,\"x\":0.5,"
            + "\"list\":[1,null,true],\"empty\":{}}",
        Json.write(obj));
    String pretty = Json.writePretty(obj);
    assertTrue(pretty, pretty.contains("\n  \"list\": [\n    1,\n    null,\n    true\n  ],"));
    Map<String, Object> back = GoldenTrace.map(Json.parse(pretty));
    assertEquals(obj.get("name"), back.get("name"));
    assertEquals(3L, back.get("n"));
    assertEquals(0.5, back.get("x"));
  }

  @Test
  public void refusesValuesJsonCannotHold() {
    assertThrows(IllegalArgumentException.class, () -> Json.write(Double.NaN));
    assertThrows(IllegalArgumentException.class, () -> Json.write(Float.POSITIVE_INFINITY));
    assertThrows(IllegalArgumentException.class, () -> Json.write(new Object()));
    Map<Object, Object> intKey = new LinkedHashMap<>();
    intKey.put(1, "a");
    assertThrows(IllegalArgumentException.class, () -> Json.write(intKey));
  }
}
