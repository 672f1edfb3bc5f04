package dev.pocketrec.core;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A small JSON reader and writer for the files a bundle, a trace, an adapter and a benchmark
 * record are made of.
 *
 * <p>The core carries its own JSON code instead of a library such as Gson or Moshi because it must
 * embed in any app without adding dependencies (or version conflicts with the app's own). The
 * formats involved are small and fixed, so about three hundred lines cover them.
 *
 * <p>Values map to Java as follows: object to {@code LinkedHashMap<String, Object>} (key order
 * kept), array to {@code ArrayList<Object>}, string to {@link String}, integer to {@link Long}
 * (or {@link BigInteger} when it does not fit), any other number to {@link Double}, {@code
 * true}/{@code false} to {@link Boolean}, {@code null} to {@code null}. Integers and other numbers
 * stay apart, as in Python, so {@code 2} and {@code 2.0} can be told apart.
 *
 * <p>The reader also accepts {@code NaN}, {@code Infinity} and {@code -Infinity}, which Python's
 * {@code json} module writes for non-finite floats (a manifest's quality metrics may hold them).
 * The writer produces strict JSON and refuses non-finite numbers.
 */
public final class Json {

  private Json() {}

  /**
   * Parses one JSON document.
   *
   * @throws IllegalArgumentException if the text is not valid JSON; the message gives the line and
   *     column of the problem.
   */
  public static Object parse(String text) {
    Reader reader = new Reader(text);
    reader.skipSpace();
    Object value = reader.value();
    reader.skipSpace();
    if (!reader.atEnd()) {
      throw reader.error("unexpected text after the JSON value");
    }
    return value;
  }

  /** Compact JSON: no spaces, as Python's {@code json.dumps(x, separators=(",", ":"))}. */
  public static String write(Object value) {
    StringBuilder out = new StringBuilder();
    new Writer(out, -1).value(value, 0);
    return out.toString();
  }

  /** Indented JSON (two spaces), as Python's {@code json.dumps(x, indent=2)}. */
  public static String writePretty(Object value) {
    StringBuilder out = new StringBuilder();
    new Writer(out, 2).value(value, 0);
    return out.toString();
  }

  private static final class Reader {
    private final String text;
    private int pos;

    Reader(String text) {
      this.text = text;
    }

    boolean atEnd() {
      return pos >= text.length();
    }

    void skipSpace() {
      while (pos < text.length()) {
        char c = text.charAt(pos);
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
          return;
        }
        pos++;
      }
    }

    Object value() {
      if (atEnd()) {
        throw error("unexpected end of input, expected a value");
      }
      char c = text.charAt(pos);
      switch (c) {
        case '{':
          return object();
        case '[':
          return array();
        case '"':
          return string();
        case 't':
          return literal("true", Boolean.TRUE);
        case 'f':
          return literal("false", Boolean.FALSE);
        case 'n':
          return literal("null", null);
        case 'N':
          return literal("NaN", Double.NaN);
        case 'I':
          return literal("Infinity", Double.POSITIVE_INFINITY);
        default:
          if (c == '-' && text.startsWith("-Infinity", pos)) {
            return literal("-Infinity", Double.NEGATIVE_INFINITY);
          }
          if (c == '-' || (c >= '0' && c <= '9')) {
            return number();
          }
          throw error("unexpected character '" + c + "', expected a value");
      }
    }

    private Object literal(String word, Object value) {
      if (!text.startsWith(word, pos)) {
        throw error("invalid literal, expected " + word);
      }
      pos += word.length();
      return value;
    }

    private Map<String, Object> object() {
      Map<String, Object> map = new LinkedHashMap<>();
      pos++; // '{'
      skipSpace();
      if (peek() == '}') {
        pos++;
        return map;
      }
      while (true) {
        skipSpace();
        if (peek() != '"') {
          throw error("expected a string key");
        }
        String key = string();
        skipSpace();
        expect(':');
        skipSpace();
        map.put(key, value());
        skipSpace();
        char c = next();
        if (c == '}') {
          return map;
        }
        if (c != ',') {
          pos--;
          throw error("expected ',' or '}'");
        }
      }
    }

    private List<Object> array() {
      List<Object> list = new ArrayList<>();
      pos++; // '['
      skipSpace();
      if (peek() == ']') {
        pos++;
        return list;
      }
      while (true) {
        skipSpace();
        list.add(value());
        skipSpace();
        char c = next();
        if (c == ']') {
          return list;
        }
        if (c != ',') {
          pos--;
          throw error("expected ',' or ']'");
        }
      }
    }

    private String string() {
      pos++; // opening quote
      int start = pos;
      // Fast path: no escapes (base64 payloads, ids).
      while (pos < text.length()) {
        char c = text.charAt(pos);
        if (c == '"') {
          return text.substring(start, pos++);
        }
        if (c == '\\' || c < 0x20) {
          break;
        }
        pos++;
      }
      StringBuilder out = new StringBuilder(text.substring(start, pos));
      while (true) {
        if (atEnd()) {
          throw error("unterminated string");
        }
        char c = text.charAt(pos++);
        if (c == '"') {
          return out.toString();
        }
        if (c < 0x20) {
          pos--;
          throw error("control character in string (escape it)");
        }
        if (c != '\\') {
          out.append(c);
          continue;
        }
        char e = next();
        switch (e) {
          case '"':
          case '\\':
          case '/':
            out.append(e);
            break;
          case 'b':
            out.append('\b');
            break;
          case 'f':
            out.append('\f');
            break;
          case 'n':
            out.append('\n');
            break;
          case 'r':
            out.append('\r');
            break;
          case 't':
            out.append('\t');
            break;
          case 'u':
            out.append(hex4());
            break;
          default:
            pos--;
            throw error("invalid escape '\\" + e + "'");
        }
      }
    }

    private char hex4() {
      if (pos + 4 > text.length()) {
        throw error("truncated \\u escape");
      }
      int code = 0;
      for (int i = 0; i < 4; i++) {
        int digit = Character.digit(text.charAt(pos + i), 16);
        if (digit < 0) {
          throw error("invalid \\u escape");
        }
        code = code * 16 + digit;
      }
      pos += 4;
      return (char) code;
    }

    private Object number() {
      int start = pos;
      if (peek() == '-') {
        pos++;
      }
      if (peek() == '0') {
        pos++;
      } else if (isDigit(peek())) {
        digits();
      } else {
        throw error("invalid number");
      }
      boolean integral = true;
      if (peek() == '.') {
        integral = false;
        pos++;
        if (!isDigit(peek())) {
          throw error("invalid number: digits must follow '.'");
        }
        digits();
      }
      if (peek() == 'e' || peek() == 'E') {
        integral = false;
        pos++;
        if (peek() == '+' || peek() == '-') {
          pos++;
        }
        if (!isDigit(peek())) {
          throw error("invalid number: digits must follow the exponent");
        }
        digits();
      }
      String literal = text.substring(start, pos);
      if (!integral) {
        return Double.parseDouble(literal);
      }
      if (pos - start <= 18) {
        return Long.parseLong(literal);
      }
      BigInteger big = new BigInteger(literal);
      return big.bitLength() < 64 ? (Object) big.longValue() : big;
    }

    private void digits() {
      while (isDigit(peek())) {
        pos++;
      }
    }

    private static boolean isDigit(char c) {
      return c >= '0' && c <= '9';
    }

    private char peek() {
      return atEnd() ? '\0' : text.charAt(pos);
    }

    private char next() {
      if (atEnd()) {
        throw error("unexpected end of input");
      }
      return text.charAt(pos++);
    }

    private void expect(char c) {
      if (peek() != c) {
        throw error("expected '" + c + "'");
      }
      pos++;
    }

    IllegalArgumentException error(String what) {
      int line = 1;
      int column = 1;
      for (int i = 0; i < pos && i < text.length(); i++) {
        if (text.charAt(i) == '\n') {
          line++;
          column = 1;
        } else {
          column++;
        }
      }
      return new IllegalArgumentException(
          "invalid JSON at line " + line + ", column " + column + ": " + what);
    }
  }

  private static final class Writer {
    private final StringBuilder out;
    private final int indent;

    Writer(StringBuilder out, int indent) {
      this.out = out;
      this.indent = indent;
    }

    void value(Object value, int depth) {
      if (value == null) {
        out.append("null");
      } else if (value instanceof String) {
        string((String) value);
      } else if (value instanceof Boolean) {
        out.append(value);
      } else if (value instanceof Double || value instanceof Float) {
        double d = ((Number) value).doubleValue();
        if (Double.isNaN(d) || Double.isInfinite(d)) {
          throw new IllegalArgumentException(
              "JSON has no representation for " + d + "; write a finite number or null");
        }
        out.append(value);
      } else if (value instanceof Long
          || value instanceof Integer
          || value instanceof Short
          || value instanceof Byte
          || value instanceof BigInteger
          || value instanceof BigDecimal) {
        out.append(value);
      } else if (value instanceof Map) {
        object((Map<?, ?>) value, depth);
      } else if (value instanceof Iterable) {
        array(((Iterable<?>) value).iterator(), depth);
      } else {
        throw new IllegalArgumentException(
            "cannot write a " + value.getClass().getName() + " as JSON; use maps, lists, "
                + "strings, numbers, booleans or null");
      }
    }

    private void object(Map<?, ?> map, int depth) {
      if (map.isEmpty()) {
        out.append("{}");
        return;
      }
      out.append('{');
      boolean first = true;
      for (Map.Entry<?, ?> entry : map.entrySet()) {
        if (!(entry.getKey() instanceof String)) {
          throw new IllegalArgumentException(
              "JSON object keys must be strings, got " + entry.getKey());
        }
        if (!first) {
          out.append(',');
        }
        first = false;
        newline(depth + 1);
        string((String) entry.getKey());
        out.append(indent < 0 ? ":" : ": ");
        value(entry.getValue(), depth + 1);
      }
      newline(depth);
      out.append('}');
    }

    private void array(Iterator<?> items, int depth) {
      if (!items.hasNext()) {
        out.append("[]");
        return;
      }
      out.append('[');
      boolean first = true;
      while (items.hasNext()) {
        if (!first) {
          out.append(',');
        }
        first = false;
        newline(depth + 1);
        value(items.next(), depth + 1);
      }
      newline(depth);
      out.append(']');
    }

    private void newline(int depth) {
      if (indent < 0) {
        return;
      }
      out.append('\n');
      for (int i = 0; i < depth * indent; i++) {
        out.append(' ');
      }
    }

    private void string(String s) {
      out.append('"');
      for (int i = 0; i < s.length(); i++) {
        char c = s.charAt(i);
        switch (c) {
          case '"':
            out.append("\\\"");
            break;
          case '\\':
            out.append("\\\\");
            break;
          case '\n':
            out.append("\\n");
            break;
          case '\r':
            out.append("\\r");
            break;
          case '\t':
            out.append("\\t");
            break;
          default:
            if (c < 0x20) {
              out.append(String.format("\\u%04x", (int) c));
            } else {
              out.append(c);
            }
        }
      }
      out.append('"');
    }
  }
}
