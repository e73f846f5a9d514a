"""Places the entity extractor knows by name: countries, US states and a few hundred cities.

Matched case-sensitively as written here. Names that are more often something else in an email
(Nice, Reading, Split, Mobile, Bath, Jersey; the first names Austin, Charlotte, Chad, Florence,
Georgia, Jordan, Santiago, Sofia, Victoria) are left out: a wrong location costs more than a missed one, and "meeting in X"
still finds them.
"""

from __future__ import annotations

COUNTRIES = (
    "Afghanistan", "Albania", "Algeria", "Andorra", "Angola", "Argentina", "Armenia", "Australia",
    "Austria", "Azerbaijan", "Bahamas", "Bahrain", "Bangladesh", "Barbados", "Belarus", "Belgium",
    "Belize", "Benin", "Bhutan", "Bolivia", "Bosnia and Herzegovina", "Botswana", "Brazil", "Brunei",
    "Bulgaria", "Burkina Faso", "Burundi", "Cambodia", "Cameroon", "Canada", "Cape Verde", "Chile",
    "China", "Colombia", "Costa Rica", "Croatia", "Cuba", "Cyprus", "Czech Republic", "Czechia",
    "Denmark", "Djibouti", "Dominican Republic", "Ecuador", "Egypt", "El Salvador", "Estonia",
    "Eswatini", "Ethiopia", "Fiji", "Finland", "France", "Gabon", "Gambia", "Germany", "Ghana",
    "Greece", "Greenland", "Guatemala", "Guinea", "Guyana", "Haiti", "Honduras", "Hungary", "Iceland",
    "India", "Indonesia", "Iran", "Iraq", "Ireland", "Israel", "Italy", "Ivory Coast", "Jamaica",
    "Japan", "Kazakhstan", "Kenya", "Kosovo", "Kuwait", "Kyrgyzstan", "Laos", "Latvia", "Lebanon",
    "Lesotho", "Liberia", "Libya", "Liechtenstein", "Lithuania", "Luxembourg", "Madagascar", "Malawi",
    "Malaysia", "Maldives", "Mali", "Malta", "Mauritania", "Mauritius", "Mexico", "Moldova", "Monaco",
    "Mongolia", "Montenegro", "Morocco", "Mozambique", "Myanmar", "Namibia", "Nepal", "Netherlands",
    "New Zealand", "Nicaragua", "Niger", "Nigeria", "North Korea", "North Macedonia", "Norway", "Oman",
    "Pakistan", "Panama", "Papua New Guinea", "Paraguay", "Peru", "Philippines", "Poland", "Portugal",
    "Puerto Rico", "Qatar", "Romania", "Russia", "Rwanda", "Saudi Arabia", "Senegal", "Serbia",
    "Seychelles", "Sierra Leone", "Singapore", "Slovakia", "Slovenia", "Somalia", "South Africa",
    "South Korea", "South Sudan", "Spain", "Sri Lanka", "Sudan", "Suriname", "Sweden", "Switzerland",
    "Syria", "Taiwan", "Tajikistan", "Tanzania", "Thailand", "Togo", "Trinidad and Tobago", "Tunisia",
    "Turkey", "Türkiye", "Turkmenistan", "Uganda", "Ukraine", "United Arab Emirates", "UAE",
    "United Kingdom", "UK", "United States", "USA", "Uruguay", "Uzbekistan", "Venezuela", "Vietnam",
    "Yemen", "Zambia", "Zimbabwe", "England", "Scotland", "Wales", "Northern Ireland", "Hong Kong",
)  # fmt: skip

US_STATES = (
    "Alabama", "Alaska", "Arizona", "Arkansas", "California", "Colorado", "Connecticut", "Delaware",
    "Florida", "Hawaii", "Idaho", "Illinois", "Indiana", "Iowa", "Kansas", "Kentucky", "Louisiana",
    "Maine", "Maryland", "Massachusetts", "Michigan", "Minnesota", "Mississippi", "Missouri",
    "Montana", "Nebraska", "Nevada", "New Hampshire", "New Jersey", "New Mexico", "New York",
    "North Carolina", "North Dakota", "Ohio", "Oklahoma", "Oregon", "Pennsylvania", "Rhode Island",
    "South Carolina", "South Dakota", "Tennessee", "Texas", "Utah", "Vermont", "Virginia",
    "Washington", "West Virginia", "Wisconsin", "Wyoming",
)  # fmt: skip

CITIES = (
    # North America
    "New York City", "NYC", "Los Angeles", "Chicago", "Houston", "Dallas", "San Antonio",
    "San Diego", "San Francisco", "San Jose", "Seattle", "Portland", "Denver", "Boulder", "Boston",
    "Atlanta", "Miami", "Orlando", "Tampa", "Philadelphia", "Pittsburgh", "Baltimore", "Detroit",
    "Minneapolis", "St. Louis", "Kansas City", "Nashville", "Raleigh", "Salt Lake City",
    "Las Vegas", "Sacramento", "Oakland", "Palo Alto", "Mountain View", "Menlo Park", "Cupertino",
    "Sunnyvale", "Santa Clara", "Redmond", "Cambridge", "New Orleans", "Cleveland", "Columbus",
    "Cincinnati", "Indianapolis", "Milwaukee", "Honolulu", "Anchorage", "Albuquerque", "Tucson",
    "Brooklyn", "Manhattan", "Washington DC", "Washington, DC", "Toronto", "Montreal", "Vancouver",
    "Calgary", "Ottawa", "Edmonton", "Quebec City", "Mexico City", "Guadalajara", "Monterrey",
    # South America
    "São Paulo", "Sao Paulo", "Rio de Janeiro", "Buenos Aires", "Lima", "Bogotá",
    "Bogota", "Medellín", "Medellin", "Caracas", "Quito", "Montevideo",
    # Europe
    "London", "Manchester", "Birmingham", "Edinburgh", "Glasgow", "Bristol", "Leeds", "Liverpool",
    "Oxford", "Dublin", "Belfast", "Paris", "Lyon", "Marseille", "Toulouse", "Bordeaux", "Berlin",
    "Munich", "Hamburg", "Frankfurt", "Cologne", "Stuttgart", "Düsseldorf", "Dusseldorf", "Vienna",
    "Zurich", "Zürich", "Geneva", "Basel", "Bern", "Amsterdam", "Rotterdam", "The Hague", "Utrecht",
    "Eindhoven", "Brussels", "Antwerp", "Luxembourg City", "Madrid", "Barcelona", "Valencia",
    "Seville", "Lisbon", "Porto", "Rome", "Milan", "Naples", "Turin", "Venice", "Bologna",
    "Athens", "Istanbul", "Ankara", "Stockholm", "Gothenburg", "Oslo", "Copenhagen", "Helsinki",
    "Reykjavik", "Tallinn", "Riga", "Vilnius", "Warsaw", "Krakow", "Kraków", "Prague", "Budapest",
    "Bratislava", "Ljubljana", "Zagreb", "Belgrade", "Bucharest", "Kyiv", "Kiev", "Moscow",
    "Saint Petersburg", "St. Petersburg", "Minsk", "Tbilisi", "Yerevan",
    # Middle East and Africa
    "Dubai", "Abu Dhabi", "Doha", "Riyadh", "Jeddah", "Tel Aviv", "Jerusalem", "Beirut", "Amman",
    "Cairo", "Casablanca", "Marrakech", "Tunis", "Algiers", "Lagos", "Abuja", "Accra", "Nairobi",
    "Addis Ababa", "Kampala", "Kigali", "Dar es Salaam", "Johannesburg", "Cape Town", "Durban",
    "Pretoria", "Dakar",
    # Asia and Oceania
    "Tokyo", "Osaka", "Kyoto", "Yokohama", "Seoul", "Busan", "Beijing", "Shanghai", "Shenzhen",
    "Guangzhou", "Hangzhou", "Chengdu", "Taipei", "Singapore", "Kuala Lumpur", "Jakarta", "Bangkok",
    "Manila", "Hanoi", "Ho Chi Minh City", "Mumbai", "Bombay", "Delhi", "New Delhi", "Bangalore",
    "Bengaluru", "Hyderabad", "Chennai", "Pune", "Kolkata", "Karachi", "Lahore", "Islamabad", "Dhaka",
    "Colombo", "Kathmandu", "Sydney", "Melbourne", "Brisbane", "Perth", "Adelaide", "Canberra",
    "Auckland", "Wellington",
)  # fmt: skip

PLACES: frozenset[str] = frozenset(COUNTRIES + US_STATES + CITIES)
LONGEST_PLACE_WORDS = max(len(place.split()) for place in PLACES)
