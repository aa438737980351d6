// pgjdbc (the Debian libpostgresql-jdbc-java package) against a running Hindsight
// server: DDL, PreparedStatement batches, typed reads, an as-of join, errors with
// SQLSTATEs, and DatabaseMetaData.getTables / getColumns.
//
// Usage: java -cp /usr/share/java/postgresql.jar JdbcSession.java PORT
// Prints "jdbc session ok" and exits 0, or throws on the first failure.

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.sql.Types;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

public class JdbcSession {
    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/hindsight";
        Properties props = new Properties();
        props.setProperty("user", "jdbc");
        // Server-side prepared statements from the first execution.
        props.setProperty("prepareThreshold", "1");
        try (Connection conn = DriverManager.getConnection(url, props)) {
            DatabaseMetaData meta = conn.getMetaData();
            check(meta.getDatabaseProductName().equals("PostgreSQL"), meta.getDatabaseProductName());
            check(meta.getDatabaseMajorVersion() >= 16, "major version " + meta.getDatabaseMajorVersion());

            try (Statement st = conn.createStatement()) {
                st.execute("CREATE TABLE jfeats (user_id BIGINT NOT NULL, ts TIMESTAMPTZ NOT NULL, "
                        + "score DOUBLE PRECISION, clicks INTEGER, label TEXT, PRIMARY KEY (user_id)) "
                        + "WITH (event_time = 'ts')");
            }

            // A PreparedStatement batch: 3 versions of 100 users, one round trip per batch.
            Instant t0 = Instant.parse("2026-01-01T00:00:00Z");
            try (PreparedStatement ps = conn.prepareStatement(
                    "INSERT INTO jfeats (user_id, ts, score, clicks, label) VALUES (?, ?, ?, ?, ?)")) {
                for (int v = 0; v < 3; v++) {
                    for (long id = 0; id < 100; id++) {
                        ps.setLong(1, id);
                        ps.setTimestamp(2, Timestamp.from(t0.plusSeconds(3600L * v)));
                        ps.setDouble(3, id + v / 10.0);
                        ps.setInt(4, (int) id * 10 + v);
                        if (v == 2 && id % 2 == 0) {
                            ps.setNull(5, Types.VARCHAR);
                        } else {
                            ps.setString(5, "v" + v);
                        }
                        ps.addBatch();
                    }
                }
                int[] counts = ps.executeBatch();
                check(counts.length == 300, "batch counts " + counts.length);
                for (int c : counts) {
                    check(c == 1, "batch row count " + c);
                }
            }

            // Latest lookup with a bound key, repeated (server-side prepared).
            try (PreparedStatement ps = conn.prepareStatement(
                    "SELECT user_id, ts, score, clicks, label FROM jfeats WHERE user_id = ?")) {
                for (long id = 0; id < 10; id++) {
                    ps.setLong(1, id);
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next(), "row for " + id);
                        check(rs.getLong(1) == id, "id");
                        check(rs.getTimestamp(2).toInstant().equals(t0.plusSeconds(7200)), "ts " + rs.getTimestamp(2));
                        check(Math.abs(rs.getDouble(3) - (id + 0.2)) < 1e-9, "score " + rs.getDouble(3));
                        check(rs.getInt(4) == id * 10 + 2, "clicks");
                        String label = rs.getString(5);
                        check(id % 2 == 0 ? label == null : label.equals("v2"), "label " + label);
                        check(!rs.next(), "one row");
                    }
                }
            }

            // as_of with a timestamp parameter.
            try (PreparedStatement ps = conn.prepareStatement(
                    "SELECT score FROM as_of(jfeats, ?) WHERE user_id = ?")) {
                ps.setTimestamp(1, Timestamp.from(t0.plusSeconds(5400)));
                ps.setLong(2, 7);
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next() && Math.abs(rs.getDouble(1) - 7.1) < 1e-9, "as_of score");
                }
            }

            // A point-in-time join.
            try (Statement st = conn.createStatement()) {
                st.execute("CREATE TABLE jspine (user_id BIGINT, ts TIMESTAMPTZ)");
                st.execute("INSERT INTO jspine VALUES (1, '2026-01-01 00:30:00+00'), "
                        + "(2, '2025-12-31 00:00:00+00')");
                try (ResultSet rs = st.executeQuery(
                        "SELECT s.user_id, f.score FROM jspine s ASOF JOIN jfeats f "
                                + "MATCH_CONDITION (s.ts >= f.ts) ON s.user_id = f.user_id ORDER BY s.user_id")) {
                    check(rs.next() && rs.getLong(1) == 1 && Math.abs(rs.getDouble(2) - 1.0) < 1e-9, "asof row 1");
                    check(rs.next() && rs.getLong(1) == 2, "asof row 2");
                    rs.getDouble(2);
                    check(rs.wasNull(), "no version before the spine time");
                    check(!rs.next(), "two rows");
                }
            }

            // Errors carry SQLSTATEs.
            try (Statement st = conn.createStatement()) {
                st.executeQuery("SELECT * FROM nope");
                throw new AssertionError("expected an error");
            } catch (SQLException e) {
                check("42P01".equals(e.getSQLState()), "sqlstate " + e.getSQLState());
            }

            // DatabaseMetaData: what IDEs and ORMs call.
            List<String> tables = new ArrayList<>();
            try (ResultSet rs = meta.getTables(null, null, "j%", new String[] {"TABLE"})) {
                while (rs.next()) {
                    tables.add(rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME"));
                }
            }
            check(tables.equals(List.of("public.jfeats", "public.jspine")), "getTables " + tables);

            List<String> columns = new ArrayList<>();
            try (ResultSet rs = meta.getColumns(null, "public", "jfeats", null)) {
                while (rs.next()) {
                    columns.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME") + ":"
                            + rs.getInt("DATA_TYPE") + ":" + rs.getString("IS_NULLABLE"));
                }
            }
            List<String> expected = List.of(
                    "user_id:int8:" + Types.BIGINT + ":NO",
                    "ts:timestamptz:" + Types.TIMESTAMP + ":NO",
                    "score:float8:" + Types.DOUBLE + ":YES",
                    "clicks:int4:" + Types.INTEGER + ":YES",
                    "label:text:" + Types.VARCHAR + ":YES");
            check(columns.equals(expected), "getColumns " + columns);
        }
        System.out.println("jdbc session ok");
    }
}
